import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ReplicatorClient, type ChunkBodyEncoding, type ReplicatorTransport } from '../../../src/agent/clients.js';
import { ChunkUploader } from '../../../src/agent/shipping/chunk-uploader.js';
import { RefugeError } from '../../../src/core/errors.js';
import type { BatchEntry } from '../../../src/protocol/chunk-batch.js';
import type { CommitPointRequest } from '../../../src/protocol/schemas.js';
import { chunkHash } from '../../../src/store/chunks.js';
import { CHUNK, startAgentFixture, type AgentFixture } from '../../helpers/agent/agent-fixture.js';

/** The real client, with what a test changes on the way: counts calls, and may play a replicator without batches. */
class Observed implements ReplicatorTransport {
  singlePuts = 0;
  batches = 0;
  constructor(
    private readonly inner: ReplicatorClient,
    private readonly o: { noBatchRoute?: boolean; rewrite?: (entries: BatchEntry[]) => BatchEntry[] } = {},
  ) {}
  missing(hashes: string[]) {
    return this.inner.missing(hashes);
  }
  async putChunk(hash: string, body: Uint8Array, encoding: ChunkBodyEncoding) {
    this.singlePuts++;
    await this.inner.putChunk(hash, body, encoding);
  }
  async putChunks(entries: BatchEntry[]) {
    this.batches++;
    // What the vault answers for a route it does not have (a replicator that predates batch uploads).
    if (this.o.noBatchRoute) throw new RefugeError('not_found', 'no route POST /replicator/v1/replications/x/chunks/batch');
    return this.inner.putChunks(this.o.rewrite ? this.o.rewrite(entries) : entries);
  }
  commit(req: CommitPointRequest) {
    return this.inner.commit(req);
  }
}

/**
 * The agent's uploader against the real replicator: chunks travel in batch requests; a patch whose base the
 * replicator lacks goes again whole; a replicator without batch uploads gets one request per chunk. Each time the
 * committed point restores to exactly the bytes shipped.
 */
describe('batch uploads from the agent', () => {
  let f: AgentFixture;
  let client: ReplicatorClient;
  let replicationId: string;
  const COUNT = 12;
  const sizeBytes = COUNT * CHUNK;

  beforeEach(async () => {
    f = await startAgentFixture('ragbatch-');
    await f.api('POST', '/vaults/demo/agents/register', {
      site: 'primary', agentVersion: 't',
      machine: { name: 'vm1', hostname: 'h', os: 'linux', cpus: 1, memoryMiB: 128, disks: [{ name: 'disk0', sizeBytes }], boot: { kind: 'disk' } },
    });
    replicationId = (await f.api<{ id: string }>('POST', '/vaults/demo/replications', { machine: 'vm1', policy: 'default', targetSite: 'recovery' })).id;
    client = new ReplicatorClient(`${f.server.url}/replicator/v1`, replicationId, await f.agentConnection());
  });
  afterEach(async () => {
    await f.close();
  });

  /** Seeds a disk of random chunks, then changes one 4 KiB block of each and ships those as patches. */
  const shipTwoPoints = async (transport: Observed, batchBytes?: number) => {
    const seed = Array.from({ length: COUNT }, () => randomBytes(CHUNK));
    const first = new ChunkUploader(transport, batchBytes ? { batchBytes } : {});
    for (const data of seed) await first.add({ hash: chunkHash(data), data });
    await first.finish();
    const p1 = await transport.commit({ parentId: null, capturedAt: new Date(Date.now() - 1000).toISOString(), consistency: 'crash', disks: [{ name: 'disk0', sizeBytes, changes: seed.map((d, i) => [i, chunkHash(d)]) }] });
    const next = seed.map((d) => {
      const n = Buffer.from(d);
      randomBytes(4096).copy(n, 8192);
      return n;
    });
    const second = new ChunkUploader(transport);
    for (const [i, data] of next.entries()) await second.add({ hash: chunkHash(data), data, base: chunkHash(seed[i] as Buffer), runs: [[8192, 4096]] });
    const stats = await second.finish();
    const p2 = await transport.commit({ parentId: p1.pointId, capturedAt: new Date().toISOString(), consistency: 'crash', disks: [{ name: 'disk0', sizeBytes, changes: next.map((d, i) => [i, chunkHash(d)]) }] });
    expect((await f.restore(replicationId, p1.pointId)).equals(Buffer.concat(seed))).toBe(true);
    expect((await f.restore(replicationId, p2.pointId)).equals(Buffer.concat(next))).toBe(true);
    return stats;
  };

  it('sends chunks in batches and patches as patches', async () => {
    const t = new Observed(client);
    const stats = await shipTwoPoints(t, 4 * CHUNK); // three agent batches for the seed
    expect(t.singlePuts).toBe(0);
    expect(t.batches).toBe(4);
    expect(stats).toMatchObject({ patches: COUNT, whole: 0, chunkBytes: COUNT * CHUNK });
    expect(stats.wireBytes).toBeLessThan(COUNT * (4096 + 8 + 100));
  });

  it('sends whole the patches whose base the replicator lacks', async () => {
    const bogus = chunkHash(Buffer.from('a base nobody stored'));
    const t = new Observed(client, { rewrite: (entries) => entries.map((e) => (e.patch ? { ...e, patch: { ...e.patch, base: bogus } } : e)) });
    const stats = await shipTwoPoints(t);
    expect(stats).toMatchObject({ patches: 0, whole: COUNT, chunkBytes: COUNT * CHUNK });
  });

  it('sends one chunk per request to a replicator without batch uploads', async () => {
    const t = new Observed(client, { noBatchRoute: true });
    const stats = await shipTwoPoints(t);
    expect(t.singlePuts).toBe(2 * COUNT);
    expect(t.batches).toBe(2); // each uploader tries once
    expect(stats).toMatchObject({ patches: COUNT, whole: 0 });
  });
});
