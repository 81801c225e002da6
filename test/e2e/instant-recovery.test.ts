import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type { Server as HttpServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../../src/core/durations.js';
import { GUEST_CMDLINE, GUEST_LINES, waitForConsole } from '../../src/fabric/demo-guest.js';
import type { FabricProvider, HydrationStatus } from '../../src/fabric/provider.js';
import type { JobView } from '../../src/vault/jobs/definitions.js';
import type { FailoverRecord, Site } from '../../src/vault/model.js';
import { createTestVault, type TestVault } from '../helpers/test-vault.js';
import { guestDiskImage, protectGuest, sha256 } from '../helpers/recovery-fixture.js';

// s3rver ships no types; only its constructor, run and close are used.
// eslint-disable-next-line @typescript-eslint/ban-ts-comment
// @ts-ignore
import S3rver from 's3rver';

/**
 * An S3 service (s3rver, on the local filesystem) that can be taken down and brought back on the same port with the
 * same data: the recovery site's replica store, whose link the dropped-link case cuts.
 */
async function s3Service() {
  const dir = await mkdtemp(join(tmpdir(), 'refuge-fabric-s3-'));
  type Instance = { run(): Promise<{ port: number }>; close(): Promise<void>; httpServer?: HttpServer };
  const Server = S3rver as unknown as new (o: object) => Instance;
  const make = (port: number) => new Server({ address: '127.0.0.1', port, silent: true, directory: dir, configureBuckets: [{ name: 'refuge' }] });
  let server: Instance | undefined = make(0);
  const { port } = await server.run();
  return {
    location: { kind: 's3' as const, bucket: 'refuge', prefix: 'recovery/', endpoint: `http://127.0.0.1:${port}`, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } },
    async down() {
      // Cut the link: open keep-alive connections are dropped too, as a network failure would drop them.
      server?.httpServer?.closeAllConnections();
      await server?.close();
      server = undefined;
    },
    async up() {
      server = make(port);
      await server.run();
    },
    async stop() {
      server?.httpServer?.closeAllConnections();
      await server?.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Waits (without a time assertion) until `check` returns a value, polling; fails with `what` after a long while. */
async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 240_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await sleep(200);
  }
}

/**
 * Instant recovery with real parts: a vault whose recovery site runs qemu, a point committed through the
 * replicator endpoints into the filesystem replica store, the demo guest booting from it over the vault's NBD
 * server under a qcow2 overlay, qemu's mirror job hydrating it onto local raw disks and switching over.
 */
describe('instant recovery', () => {
  let v: TestVault;
  let site: Site;
  let fabric: FabricProvider;
  let disk0: Buffer;
  let disk1: Buffer;
  let job: JobView;
  let s3: Awaited<ReturnType<typeof s3Service>>;
  let readyAt: { hydration: HydrationStatus; job: JobView; record: FailoverRecord | undefined; pid: number | undefined };

  beforeAll(async () => {
    v = await createTestVault('sqlite', { realFabric: true });
    s3 = await s3Service();
    disk0 = await guestDiskImage(48, 'instant');
    disk1 = randomBytes(16 * 1024 * 1024); // dense: every chunk is fetched from the store by the (limited) copy
    await protectGuest(v, [{ name: 'disk0', content: disk0 }, { name: 'disk1', content: disk1 }], { cmdline: `${GUEST_CMDLINE} refuge.disk_hash=1`, recoveryStore: s3.location });
    site = await v.repos.sites.get((await v.repos.vaults.get('demo')).id, 'recovery');
    fabric = v.sites.fabric(site);
    expect((await v.sites.store(site)).backend.location).toContain('s3://refuge/recovery/');
  });
  afterAll(async () => {
    await fabric?.delete('vm1').catch(() => undefined);
    await v?.cleanup();
    await s3?.stop();
  });

  const record = async () => (await v.repos.replications.get(site.vaultId, 'vm1')).failover.failover;

  it('runs the guest from the store before hydration ends, on the point\'s exact bytes', async () => {
    // The hydration copy is limited (as a site's store throughput limit would) to 20 KiB/s, so it is still going
    // when the guest has booted; the assertions are on the state at the moment the guest reports ready.
    const r = await v.call<JobView>('POST', '/api/v1/vaults/demo/replications/vm1/failover', { mode: 'instant', hydrationMiBps: 0.02 });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    job = r.body;
    const text = await waitForConsole(() => fabric.console('vm1'), new RegExp(`${GUEST_LINES.ready}`), 300_000).then(() => fabric.console('vm1'));
    readyAt = { hydration: await fabric.hydration!.status('vm1'), job: await v.engine.get(job.id), record: await record(), pid: (await fabric.status('vm1')).pid };

    expect(readyAt.hydration.state).toBe('hydrating');
    expect(readyAt.hydration.doneBytes).toBeLessThan(readyAt.hydration.totalBytes);
    expect(readyAt.job.state).toBe('running');
    expect(readyAt.job.tasks.find((t) => t.name === 'confirm-running')?.state).toBe('succeeded');
    expect(readyAt.record?.mode).toBe('instant');
    expect(readyAt.record?.startedAt).toBeDefined();
    expect(readyAt.record?.hydratedAt).toBeUndefined();
    // The guest hashed its whole first disk before mounting it: the bytes served through NBD and the overlay are the point's.
    expect(text).toContain(`${GUEST_LINES.diskHash}${sha256(disk0)}`);
    expect(text).toContain(`${GUEST_LINES.markerRead}instant`);
    expect(text).toContain(GUEST_LINES.dataVerified);
  });

  it('survives a dropped link to the store: reads wait and retry, hydration resumes when it is back', async () => {
    const key = `${site.id}/vm1`;
    const retriesBefore = Object.values(await v.sites.instant.stats(key)).reduce((n, s) => n + s.retries, 0);
    await s3.down(); // the link to the object store is gone: every read of a pack is refused
    let during: HydrationStatus;
    try {
      await until('the served point to retry a store read', async () => {
        const retries = Object.values(await v.sites.instant.stats(key)).reduce((n, s) => n + s.retries, 0);
        return retries > retriesBefore ? retries : undefined;
      });
      during = await fabric.hydration!.status('vm1');
    } finally {
      await s3.up();
    }
    // Nothing failed while the store was away: the copy is still going and the guest still runs.
    expect(during.state).toBe('hydrating');
    expect((await fabric.status('vm1')).state).toBe('running');
    const stats = Object.values(await v.sites.instant.stats(key));
    expect(stats.reduce((n, s) => n + s.failedReads, 0)).toBe(0);

    await fabric.hydration!.setSpeed('vm1', 0); // let the rest of the copy run at full speed
    const done = await v.engine.waitFor(job.id);
    expect(done.state, JSON.stringify(done.error)).toBe('succeeded');
  });

  it('switches the running guest onto local disks holding the point\'s bytes, without a restart', async () => {
    const after = await fabric.hydration!.status('vm1');
    expect(after.state).toBe('done');
    const status = await fabric.status('vm1');
    expect(status.state).toBe('running');
    expect(status.pid).toBe(readyAt.pid); // the same qemu process: switched over, not restarted
    const rec = await record();
    expect(rec?.hydratedAt).toBeDefined();
    expect(await v.sites.instant.get(`${site.id}/vm1`)).toBeUndefined(); // the point is no longer served
    // disk1 is never written by the guest: the hydrated local file is the point's disk, byte for byte.
    const local1 = await readFile(rec?.disks[1] as string);
    expect(local1.length).toBe(disk1.length);
    expect(local1.equals(disk1)).toBe(true);
    const store = await v.sites.store(site);
    const point = await store.getPoint((await v.repos.replications.get(site.vaultId, 'vm1')).id, rec?.pointId as string);
    expect(local1.equals(await store.readRange(point, 'disk1', 0, disk1.length))).toBe(true);
    // disk0 is the guest's mounted filesystem (mounting rewrites its superblock), so only its size is compared.
    expect((await readFile(rec?.disks[0] as string)).length).toBe(disk0.length);
    // The copy-on-write overlays are gone with the switch-over.
    expect(existsSync(join(site.config.workDir, 'vm1', 'overlay0.qcow2'))).toBe(false);
  });
});
