import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AzureBlobBackend } from '../../../src/store/backends/azure-blob.js';
import { openBackend } from '../../../src/store/backends/open-backend.js';
import { S3Backend } from '../../../src/store/backends/s3.js';
import { ReplicaStore } from '../../../src/store/replica-store.js';
import { describeBackendContract } from './backend-contract.js';
import { expectRefugeError } from './expect-error.js';
import { commitDisk, expectSameBytes, makeTempDir } from './fixtures.js';
import { AZURITE_ACCOUNT, AZURITE_KEY, startAzurite, startS3rver } from './storage-services.js';

/**
 * The backend contract and a replica store round trip against real S3 (s3rver) and Azure Blob (Azurite) servers,
 * started here. Every test gets its own prefix in one bucket/container: a fresh, empty namespace.
 */

let s3: Awaited<ReturnType<typeof startS3rver>>;
let azurite: Awaited<ReturnType<typeof startAzurite>>;
let n = 0;
const prefix = () => `t${process.pid}-${++n}/`;

beforeAll(async () => {
  [s3, azurite] = await Promise.all([startS3rver(), startAzurite()]);
  await new AzureBlobBackend({ kind: 'azure', accountUrl: azurite.accountUrl, container: 'refuge-test', accountName: AZURITE_ACCOUNT, accountKey: AZURITE_KEY }).ensureContainer();
}, 60_000);
afterAll(async () => {
  await Promise.all([s3?.stop(), azurite?.stop()]);
});

const s3Config = () => ({ kind: 's3' as const, bucket: s3.bucket, prefix: prefix(), endpoint: s3.endpoint, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
const azureConfig = () => ({ kind: 'azure' as const, accountUrl: azurite.accountUrl, container: 'refuge-test', prefix: prefix(), accountName: AZURITE_ACCOUNT, accountKey: AZURITE_KEY });

describeBackendContract('s3 (s3rver)', async () => ({ backend: new S3Backend(s3Config()), cleanup: async () => undefined }));
describeBackendContract('azure blob (azurite)', async () => ({ backend: new AzureBlobBackend(azureConfig()), cleanup: async () => undefined }));
describeBackendContract('s3 with retry and limit wrappers', async () => ({ backend: await openBackend(s3Config()), cleanup: async () => undefined }));

describe.each([
  ['s3', () => openBackend(s3Config())],
  ['azure', () => openBackend(azureConfig(), { create: true })],
])('replica store on %s', (_name, backend) => {
  it('commits encrypted points and restores them byte for byte', async () => {
    const dir = await makeTempDir();
    try {
      const vaultKey = randomBytes(32);
      const b = await backend();
      const store = await ReplicaStore.open(b, { create: true, chunkSize: 4096, packSize: 64 * 1024, encrypt: true, vaultKey });
      const disk = Buffer.concat([randomBytes(40_000), Buffer.alloc(20_000), Buffer.from('text '.repeat(8000))]);
      const { point: p1 } = await commitDisk(store, disk);
      randomBytes(5000).copy(disk, 30_000);
      const { point: p2 } = await commitDisk(store, disk, { parent: p1 });
      await store.close();
      const again = await ReplicaStore.open(b, { vaultKey });
      await again.materialize(await again.getPoint('rep_test', p2.id), 'disk0', `${dir.path}/p2.img`);
      const { readFile } = await import('node:fs/promises');
      expectSameBytes(await readFile(`${dir.path}/p2.img`), disk, 'restored');
      expect(await again.verifyPoint(p1)).toEqual([]);
      await expectRefugeError(ReplicaStore.open(b), 'failed_precondition', 'encrypted');
      await expectRefugeError(ReplicaStore.open(b, { vaultKey: randomBytes(32) }), 'permission_denied', 'not the key');
    } finally {
      await dir.cleanup();
    }
  });
});
