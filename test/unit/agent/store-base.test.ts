import { randomBytes } from 'node:crypto';
import { open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ScanCapture } from '../../../src/agent/capture/scan-capture.js';
import { differingRuns, blockDigests } from '../../../src/protocol/chunk-encoding.js';
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
});
