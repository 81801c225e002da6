import { randomBytes } from 'node:crypto';
import { open, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ScanCapture } from '../../../src/agent/capture/scan-capture.js';
import { ReplicatorClient, type ReplicatorTransport } from '../../../src/agent/clients.js';
import { RefugeError } from '../../../src/core/errors.js';
import { storeBase } from '../../../src/agent/shipping/store-base.js';
import { differingRuns, blockDigests } from '../../../src/protocol/chunk-encoding.js';
import type { PointChunksResponse } from '../../../src/protocol/schemas.js';
import { CHUNK, MiB, startAgentFixture, type AgentFixture } from '../../helpers/agent/agent-fixture.js';

describe('block digests', () => {
  it('finds the runs of 4 KiB blocks that differ, merging neighbours', () => {
    const base = randomBytes(64 * 1024);
    const now = Buffer.from(base);
    const flip = (at: number) => now.writeUInt8(now.readUInt8(at) ^ 1, at);
    flip(5000); // block 1
    flip(9000); // block 2
    flip(40_000); // block 9
    expect(differingRuns(now, blockDigests(base))).toEqual([[4096, 8192], [36_864, 4096]]);
    expect(differingRuns(base, blockDigests(base))).toEqual([]);
  });
});

describe("reading a point's chunk listing", () => {
  it('takes the whole listing of a replicator that predates paging, and nothing from one that predates listings', async () => {
    const h = 'ab'.repeat(32);
    const asked: unknown[] = [];
    const old = {
      pointChunks: async (pointId: string, page?: unknown) => {
        asked.push(page);
        // What its querystring schema (listing only, additionalProperties: false) answers to the page's parameters.
        if (page) throw new RefugeError('invalid_argument', "/querystring must NOT have additional properties");
        return { pointId, disks: [{ name: 'disk0', sizeBytes: 4 * CHUNK, chunkSize: CHUNK, hashes: [null, h, null, null] }, { name: 'disk1', sizeBytes: 4 * CHUNK, chunkSize: CHUNK, chunks: [[3, h]] as [number, string][] }] };
      },
    } as unknown as ReplicatorTransport;
    const base = await storeBase(old, 'pt_x', CHUNK, ['disk0', 'disk1'], 10);
    expect(asked).toEqual([{ disk: 'disk0', from: 0, limit: 10 }, undefined]); // refused, then one listing of every disk
    expect([0, 1, 2, 3].map((i) => base.disk0?.get(i))).toEqual([null, h, null, null]);
    expect([0, 1, 2, 3].map((i) => base.disk1?.get(i))).toEqual([null, null, null, h]);
    const older = { pointChunks: async () => Promise.reject(new RefugeError('not_found', 'no route')) } as unknown as ReplicatorTransport;
    expect(await storeBase(older, 'pt_x', CHUNK, ['disk0'])).toEqual({});
  });
});

/**
 * An agent without hashes of its own (state lost, or a re-protect's seed as parent) compares with the store's
 * chunk hashes and block digests: it ships patches of the blocks that differ, not the chunks.
 */
describe('agent comparing with the store', () => {
  let f: AgentFixture | undefined;
  afterEach(async () => f?.close());

  it('after losing its state, ships only the changed 4 KiB blocks as patches', async () => {
    f = await startAgentFixture('rag-storebase-');
    const image = join(f.dir, 'disk0.raw');
    const size = 8 * MiB;
    await writeFile(image, randomBytes(size));
    const disks = [{ name: 'disk0', sizeBytes: size, path: image }];
    f.startAgent(new ScanCapture({ disks }), disks);
    const rep = await f.enable();
    const seeded = await f.pointAfter(new Date(0));
    await f.stopAgent();
    await rm(join(f.dir, 'agent'), { recursive: true, force: true }); // the agent forgets every hash

    const file = await open(image, 'r+');
    for (const at of [100, 3 * CHUNK + 8192, 7 * CHUNK]) await file.write(randomBytes(4096), 0, 4096, at);
    await file.close();
    const before = { ...f.counters(rep) };
    const changedAt = new Date();
    const agent = f.startAgent(new ScanCapture({ disks }), disks);
    const point = await f.pointAfter(changedAt);
    expect(point.id).not.toBe(seeded.id);
    expect((await f.restore(rep, point.id)).equals(await readFile(image))).toBe(true);
    const wire = (f.counters(rep)?.wireBytesReceived ?? 0) - (before.wireBytesReceived ?? 0);
    // Three writes of 4 KiB, one of them across two blocks: at most 4 blocks and the patch headers.
    expect(wire).toBeLessThanOrEqual(4 * 4096 + 64);
    expect(wire).toBeGreaterThan(0);
    expect(agent.counters.upload.patches).toBe(3);
    expect(agent.counters.upload.whole).toBe(0);
  });

  it('gets a sparse disk listed by its data (the same hashes as the full listing), and resyncs from it', async () => {
    f = await startAgentFixture('rag-storebase-');
    const image = join(f.dir, 'disk0.raw');
    const size = 256 * MiB; // 1,024 chunks, two of them data
    await writeFile(image, Buffer.alloc(0));
    await truncate(image, size); // sparse
    const file = await open(image, 'r+');
    for (const at of [3 * CHUNK, 700 * CHUNK]) await file.write(randomBytes(CHUNK), 0, CHUNK, at);
    await file.close();
    const disks = [{ name: 'disk0', sizeBytes: size, path: image }];
    f.startAgent(new ScanCapture({ disks }), disks);
    const rep = await f.enable();
    const seeded = await f.pointAfter(new Date(0));
    await f.stopAgent();

    type Listing = PointChunksResponse['disks'][number];
    const url = `${f.server.url}/replicator/v1/replications/${rep}/points/${seeded.id}/chunks`;
    const [sparse] = (await f.agentHttp('GET', `${url}?listing=sparse`)).json<PointChunksResponse>().disks as [Listing];
    const [full] = (await f.agentHttp('GET', url)).json<PointChunksResponse>().disks as [Listing];
    expect(sparse.hashes).toBeUndefined();
    expect(sparse.chunks?.map(([i]) => i)).toEqual([3, 700]);
    expect(full.chunks).toBeUndefined();
    expect(full.hashes).toHaveLength(1024);
    expect(full.hashes?.flatMap((h, i) => (h === null ? [] : [[i, h]]))).toEqual(sparse.chunks);
    expect((await f.agentHttp('GET', `${url}?listing=dense`)).status).toBe(400);

    // Paged by disk: a page of at most `limit` chunks and where the next one starts; the agent's reading of the
    // pages gives the hashes of the whole listing.
    const page = async (q: string) => (await f?.agentHttp('GET', `${url}?listing=sparse&${q}`))?.json<PointChunksResponse>();
    expect(await page('disk=disk0&from=0&limit=1')).toMatchObject({ disks: [{ name: 'disk0', sizeBytes: size, chunkSize: CHUNK, chunks: [sparse.chunks?.[0]] }], next: 700 });
    expect(await page('disk=disk0&from=700&limit=1')).toMatchObject({ disks: [{ chunks: [sparse.chunks?.[1]] }], next: null });
    expect(await page('disk=disk0&from=701')).toMatchObject({ disks: [{ chunks: [] }], next: null });
    expect(await page('disk=disk9')).toMatchObject({ disks: [], next: null });
    expect((await f.agentHttp('GET', `${url}?disk=disk0`)).status).toBe(400); // pages are sparse
    expect((await f.agentHttp('GET', `${url}?listing=sparse&disk=disk0&limit=100001`)).status).toBe(400);
    const client = new ReplicatorClient(`${f.server.url}/replicator/v1`, rep, await f.agentConnection());
    const base = await storeBase(client, seeded.id, CHUNK, ['disk0', 'disk9'], 1);
    expect(Object.keys(base)).toEqual(['disk0']);
    expect(base.disk0?.length).toBe(1024);
    expect(Array.from({ length: 1024 }, (_, i) => base.disk0?.get(i) ?? null)).toEqual(full.hashes);

    await rm(join(f.dir, 'agent'), { recursive: true, force: true }); // the agent forgets every hash
    const again = await open(image, 'r+');
    await again.write(randomBytes(4096), 0, 4096, 700 * CHUNK + 8192);
    await again.close();
    const before = f.counters(rep)?.wireBytesReceived ?? 0;
    const changedAt = new Date();
    const agent = f.startAgent(new ScanCapture({ disks }), disks);
    const point = await f.pointAfter(changedAt);
    expect((await f.restore(rep, point.id)).equals(await readFile(image))).toBe(true);
    expect((f.counters(rep)?.wireBytesReceived ?? 0) - before).toBeLessThanOrEqual(4096 + 64); // one block's patch
    expect(agent.counters.upload).toMatchObject({ patches: 1, whole: 0 });
  });
});
