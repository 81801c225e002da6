import { randomBytes } from 'node:crypto';
import { open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CdpCapture } from '../../../src/agent/capture/cdp-capture.js';
import type { ReplicatorTransport } from '../../../src/agent/clients.js';
import { RefugeError } from '../../../src/core/errors.js';
import { frameBatch, type FramedBatch } from '../../../src/protocol/chunk-batch.js';
import { LEAF_SIZE, blobName } from '../../../src/store/chunks.js';
import type { StoreFormat } from '../../../src/store/store-config.js';
import { chunkHash } from '../../helpers/chunk-name.js';
import { FilesystemBackend } from '../../../src/store/backends/filesystem.js';
import { ReplicaStore } from '../../../src/store/replica-store.js';
import type { CommitPointRequest, CommitPointResponse } from '../../../src/protocol/schemas.js';
import { CHUNK, MiB, startAgentFixture, waitFor, type AgentFixture } from '../../helpers/agent/agent-fixture.js';
import { NBD, RawNbdClient } from '../../helpers/agent/raw-nbd-client.js';

const SIZE = 8 * MiB;

/** The real client with its `commit` replaced: the fault a test injects into the agent's commits. */
const withCommit = (client: ReplicatorTransport, commit: (req: CommitPointRequest) => Promise<CommitPointResponse>): ReplicatorTransport =>
  new Proxy(client, {
    get(target, key, receiver) {
      if (key === 'commit') return commit;
      const v: unknown = Reflect.get(target, key, receiver);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });

/**
 * cdp capture end to end against a real vault: the disk is written through the agent's NBD export, points ship
 * only what was written (as patches, reading only the written chunks), every point restores to the disk's bytes
 * at its cut, and an agent that lost its tracking resynchronizes by hash comparison, shipping only differences.
 */
describe('agent replication (cdp mode)', () => {
  let f: AgentFixture;
  let image: string;
  let socketPath: string;
  let nbd: RawNbdClient | undefined;
  let handle = 0n;

  const capture = () => new CdpCapture({ disks: [{ name: 'disk0', path: image, socketPath }], stateDir: join(f.dir, 'agent', 'cdp') });
  const start = () => f.startAgent(capture(), [{ name: 'disk0', sizeBytes: SIZE }]);
  const write = async (offset: number, data: Buffer) => {
    nbd ??= await RawNbdClient.attach(socketPath);
    nbd.request(NBD.cmd.write, ++handle, offset, data.length, 0, data);
    expect((await nbd.reply()).error).toBe(0);
  };
  const stop = async () => {
    nbd?.close();
    nbd = undefined;
    await f.stopAgent();
  };
  const writeImageDirectly = async (offset: number, data: Buffer) => {
    const file = await open(image, 'r+');
    await file.write(data, 0, data.length, offset);
    await file.close();
  };

  /** A vault (its store made of `storeFormat` first, when given) and a disk image: chunks 2..4 random, the rest zeros. */
  const setUp = async (prefix: string, storeFormat?: StoreFormat): Promise<Buffer> => {
    f = await startAgentFixture(prefix, {}, storeFormat ? { storeFormat } : {});
    image = join(f.dir, 'disk0.raw');
    socketPath = join(f.dir, 'disk0.sock');
    const disk = Buffer.alloc(SIZE);
    randomBytes(3 * MiB).copy(disk, 2 * MiB);
    await writeFile(image, disk);
    return disk;
  };

  beforeEach(async () => {
    await setUp('ragcdp-');
  });
  afterEach(async () => {
    nbd?.close();
    nbd = undefined;
    await f.close();
  });

  it('into a format-2 store (SHA-256 names): seeds, then ships only the written blocks as patches, reading only written chunks; every point restores exactly', async () => {
    await f.close();
    await setUp('ragcdp2-', 2);
    start();
    const rep = await f.enable();
    const first = await f.pointAfter(new Date(0));
    expect((await f.restore(rep, first.id)).equals(await readFile(image))).toBe(true);
    expect(f.counters(rep)?.wireBytesReceived).toBe(3 * MiB); // random chunks do not compress; zero chunks are not sent
    const readAfterSeeding = f.agent?.counters.readBytes ?? 0;

    await write(5 * MiB + 8192, randomBytes(12 * 1024)); // into a zero chunk
    await write(2 * MiB + 4096, randomBytes(4096)); // into a random chunk
    const writtenAt = new Date();
    const second = await f.pointAfter(writtenAt);
    const afterSecond = await readFile(image);
    expect((await f.restore(rep, second.id)).equals(afterSecond)).toBe(true);
    expect((await f.restore(rep, first.id)).subarray(2 * MiB, 3 * MiB).equals(afterSecond.subarray(2 * MiB, 3 * MiB))).toBe(false);
    const c = f.counters(rep);
    expect(c?.patchesReceived).toBe(2);
    expect((c?.wireBytesReceived ?? 0) - 3 * MiB).toBeLessThan(2 * (16 * 1024 + 64)); // the written 16 KiB, not 2 MiB
    expect((f.agent?.counters.readBytes ?? 0) - readAfterSeeding).toBe(2 * CHUNK); // two chunks read, not the disk
  });

  it('into a format-3 store (leaf-digest names): the agent hashes as the store names, ships patches, every point restores exactly', async () => {
    await f.close();
    const disk = await setUp('ragcdp3-', 3);
    // No chunk sampled for a whole read (below, the sample is every chunk).
    f.startAgent(capture(), [{ name: 'disk0', sizeBytes: SIZE }], { leafSampleEvery: 0 });
    const rep = await f.enable();
    const first = await f.pointAfter(new Date(0));
    expect((await f.restore(rep, first.id)).equals(disk)).toBe(true);
    const seeded = f.agent?.counters.readBytes ?? 0;
    await write(5 * MiB + 8192, randomBytes(12 * 1024)); // leaves 0 and 1 of a zero chunk
    await write(2 * MiB + 4096, randomBytes(4096)); // leaf 0 of a random chunk
    const second = await f.pointAfter(new Date());
    const after = await readFile(image);
    expect((await f.restore(rep, second.id)).equals(after)).toBe(true);
    expect(f.counters(rep)?.patchesReceived).toBe(2);
    // Only the written leaves were read and hashed (16 KiB each), not the two chunks: the other leaves' digests came
    // from the agent's leaf-digest file, recorded when the seed read the disk.
    expect((f.agent?.counters.readBytes ?? 0) - seeded).toBe(3 * 16 * 1024);

    // A damaged digest file costs reading the chunk whole, never a wrong name: the point still restores exactly.
    await writeFile(join(f.dir, 'agent', 'leaf-digests', 'disk0.bin'), randomBytes(64 * 1024));
    const before = f.agent?.counters.readBytes ?? 0;
    await write(2 * MiB + 100_000, randomBytes(4096));
    const third = await f.pointAfter(new Date());
    expect((await f.restore(rep, third.id)).equals(await readFile(image))).toBe(true);
    expect((f.agent?.counters.readBytes ?? 0) - before).toBe(CHUNK);

    // Sampled chunks are read whole though their digests are good (a write the tracking missed would show there).
    await f.stopAgent();
    nbd?.close();
    nbd = undefined;
    f.startAgent(capture(), [{ name: 'disk0', sizeBytes: SIZE }], { leafSampleEvery: 1 });
    await waitFor(async () => (await stat(socketPath).catch(() => undefined)) !== undefined, 20_000, 'the export serving again');
    const restarted = f.agent?.counters.readBytes ?? 0;
    await write(5 * MiB + 8192, randomBytes(4096));
    const fourth = await f.pointAfter(new Date());
    expect((await f.restore(rep, fourth.id)).equals(await readFile(image))).toBe(true);
    expect((f.agent?.counters.readBytes ?? 0) - restarted).toBe(CHUNK);
    // The store's chunks carry leaf-digest names, not SHA-256 ones: the agent named them so.
    const store = await ReplicaStore.open(new FilesystemBackend(join(f.dir, 'vault', 'sites', 'recovery', 'store')));
    expect(store.config.format).toBe(3);
    const changed = after.subarray(2 * MiB, 2 * MiB + CHUNK);
    expect(store.blobs.has(blobName(changed, 'leaf16'))).toBe(true);
    expect(store.blobs.has(blobName(changed, 'sha256'))).toBe(false);
  });

  it('keeps shipping from where it was after a clean restart (patches, no full read)', async () => {
    start();
    const rep = await f.enable();
    await f.pointAfter(new Date(0));
    await write(6 * MiB, randomBytes(8192));
    await stop(); // stopped before the write was shipped
    start();
    const restartedAt = new Date();
    const point = await f.pointAfter(restartedAt);
    expect((await f.restore(rep, point.id)).equals(await readFile(image))).toBe(true);
    expect(f.counters(rep)?.patchesReceived).toBe(1);
    expect(f.agent?.counters.readBytes).toBe(LEAF_SIZE); // the written leaf: its digests outlived the restart
  });

  it('after losing its tracking (image changed behind its back) compares every chunk and ships only differences', async () => {
    start();
    const rep = await f.enable();
    await f.pointAfter(new Date(0));
    await stop();
    await writeImageDirectly(7 * MiB + 3, randomBytes(MiB - 3)); // not seen by the agent
    start();
    const point = await f.pointAfter(new Date());
    expect((await f.restore(rep, point.id)).equals(await readFile(image))).toBe(true);
    expect(f.agent?.counters.readBytes).toBe(SIZE); // every chunk compared by hash...
    expect(f.counters(rep)?.bytesReceived).toBe(3 * MiB + MiB); // ...and only the changed one shipped
  });

  it('after losing all its state resynchronizes by hash comparison, never a full copy', async () => {
    start();
    const rep = await f.enable();
    await f.pointAfter(new Date(0));
    await write(3 * MiB, Buffer.alloc(MiB)); // a chunk zeroed
    await stop();
    await rm(join(f.dir, 'agent'), { recursive: true, force: true }); // agent and cdp state lost
    await writeImageDirectly(6 * MiB, randomBytes(MiB)); // and an untracked change
    const before = f.counters(rep)?.wireBytesReceived ?? 0;
    start();
    const point = await f.pointAfter(new Date());
    expect((await f.restore(rep, point.id)).equals(await readFile(image))).toBe(true);
    expect((f.counters(rep)?.wireBytesReceived ?? 0) - before).toBe(MiB); // the one new chunk; the zeroed one costs nothing
  });
  it('continues from a resent commit that lands after the vault last reported its latest point: no full compare, no conflict', async () => {
    // One commit's request is lost on the way (the vault was stopped, say); the agent's resend is what lands it,
    // after the heartbeat that told the agent the vault's latest point: the resend's answer is the newer news.
    let lose = false;
    const losing = (client: ReplicatorTransport) =>
      withCommit(client, async (req) => {
        if (lose && req.disks.some((d) => d.changes.length > 0)) {
          lose = false;
          throw new RefugeError('unavailable', 'connection reset before the request arrived (injected)');
        }
        return client.commit(req);
      });
    const agent = f.startAgent(capture(), [{ name: 'disk0', sizeBytes: SIZE }], { transportFor: losing, shipping: { retry: { attempts: 1, firstDelayMs: 10 } } });
    const rep = await f.enable();
    await f.pointAfter(new Date(0));
    await waitFor(() => agent.counters.pointsCommitted >= 1, 20_000, 'the seed answered');
    const readAfterSeed = agent.counters.readBytes;
    lose = true;
    await write(6 * MiB, randomBytes(8192));
    await waitFor(() => agent.counters.cutsAbandoned >= 1, 20_000, 'the unanswered point given up');
    await write(7 * MiB + 4096, randomBytes(4096));
    const next = await f.pointAfter(new Date());
    expect((await f.restore(rep, next.id)).equals(await readFile(image))).toBe(true);
    // The agent knew the resent point was the latest: the next point compared only the tracked chunks, and no
    // commit was refused for naming a stale parent.
    expect(agent.counters.cutsAbandoned).toBe(1);
    expect(agent.counters.readBytes - readAfterSeed).toBe(2 * LEAF_SIZE); // the two written leaves
  });

  it('sends again a commit that landed while its answer was lost, and continues from its point: no full read', async () => {
    // The first agent's commits land, but from some point on it never hears back of one that changes anything.
    let loseAnswers = false;
    const losing = (client: ReplicatorTransport) =>
      withCommit(client, async (req) => {
        const r = await client.commit(req);
        if (loseAnswers && req.disks.some((d) => d.changes.length > 0)) throw new RefugeError('unavailable', 'connection reset before the answer arrived (injected)');
        return r;
      });
    const first = f.startAgent(capture(), [{ name: 'disk0', sizeBytes: SIZE }], { transportFor: losing, shipping: { retry: { attempts: 2, firstDelayMs: 10 } } });
    const rep = await f.enable();
    await f.pointAfter(new Date(0));
    await waitFor(() => first.counters.pointsCommitted >= 1, 20_000, 'the seed answered');
    loseAnswers = true;
    await write(6 * MiB, randomBytes(8192));
    const landed = await f.pointAfter(new Date()); // committed, but the agent never learns it
    await waitFor(() => first.counters.cutsAbandoned >= 1, 20_000, 'the unanswered point given up');
    await write(7 * MiB + 4096, randomBytes(4096)); // tracked, never shipped by the first agent
    await stop();

    start();
    const restartedAt = new Date();
    const point = await f.pointAfter(restartedAt);
    expect((await f.restore(rep, point.id)).equals(await readFile(image))).toBe(true);
    expect((await f.restore(rep, landed.id)).subarray(6 * MiB, 6 * MiB + 8192).equals((await readFile(image)).subarray(6 * MiB, 6 * MiB + 8192))).toBe(true);
    // The resent commit was a replay (no new point for it), and the agent compared only what its capture tracked
    // since the seed: the leaves of the two written chunks, not the 8 MiB disk; only the second write travels.
    const between = (await f.points()).filter((p) => Date.parse(p.capturedAt) > Date.parse(landed.capturedAt) && Date.parse(p.capturedAt) <= restartedAt.getTime());
    expect(between).toEqual([]);
    expect(f.agent?.counters.readBytes).toBe(2 * LEAF_SIZE); // the two written leaves
    expect(f.counters(rep)?.patchesReceived).toBe(2);
  });

  it('when the replicator lacks a patch\'s base, fails that cut and sends the chunk whole in the next: the point restores exactly', async () => {
    // The replicator plays a store that lost one chunk of the seed (the base of the next write's patch).
    const lost = chunkHash((await readFile(image)).subarray(8 * CHUNK, 9 * CHUNK));
    let refusedPatches = 0;
    const lacking = (client: ReplicatorTransport): ReplicatorTransport =>
      new Proxy(client, {
        get(target, key, receiver) {
          if (key === 'putChunks') {
            return async (batch: FramedBatch, signal?: AbortSignal) => {
              const onLost = (e: FramedBatch['entries'][number]) => e.patch?.base === lost;
              const keep = batch.entries.filter((e) => !onLost(e));
              refusedPatches += batch.entries.length - keep.length;
              const r = keep.length > 0 ? await target.putChunks?.(frameBatch(keep), signal) : { stored: 0, baseMissing: [] };
              return { stored: r?.stored ?? 0, baseMissing: [...(r?.baseMissing ?? []), ...batch.entries.filter(onLost).map((e) => e.hash)] };
            };
          }
          const v: unknown = Reflect.get(target, key, receiver);
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      });
    const agent = f.startAgent(capture(), [{ name: 'disk0', sizeBytes: SIZE }], { transportFor: lacking, shipping: { retry: { attempts: 1, firstDelayMs: 10 } } });
    const rep = await f.enable();
    await f.pointAfter(new Date(0));
    await waitFor(() => agent.counters.pointsCommitted >= 1, 20_000, 'the seed answered');
    const wholeAfterSeed = agent.counters.upload.whole;
    const wroteAt = new Date();
    await write(8 * CHUNK + 8192, randomBytes(4096)); // on the lost base
    await write(6 * MiB, randomBytes(4096)); // on a base the store has: a patch, stored by the failed cut already
    const point = await f.pointAfter(wroteAt);
    expect(refusedPatches).toBe(1);
    expect(agent.counters.cutsAbandoned).toBe(1);
    expect((await f.restore(rep, point.id)).equals(await readFile(image))).toBe(true);
    expect(agent.counters.upload.whole - wholeAfterSeed).toBe(1); // the chunk on the lost base, in the next cut
    expect(f.counters(rep)?.patchesReceived).toBe(1);
  });
});
