import { randomBytes } from 'node:crypto';
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ScanCapture } from '../../../src/agent/capture/scan-capture.js';
import type { JobView } from '../../../src/vault/jobs/definitions.js';
import { MiB, startAgentFixture, waitFor, type AgentFixture } from '../../helpers/agent/agent-fixture.js';

/**
 * Test failover isolation (ASR: "no impact on replication"): while a test failover runs, a real agent keeps cutting
 * and shipping points, and they hold the source's new writes; the test copy keeps the bytes of the point it booted.
 */
describe('test failover beside replication', () => {
  let f: AgentFixture | undefined;
  afterEach(async () => f?.close());

  it('keeps producing points with the new writes while the test copy runs, and after its cleanup', async () => {
    f = await startAgentFixture('orch-tfo-');
    const image = join(f.dir, 'disk0.raw');
    const size = 4 * MiB;
    await writeFile(image, randomBytes(size));
    const disks = [{ name: 'disk0', sizeBytes: size, path: image }];
    f.startAgent(new ScanCapture({ disks }), disks);
    const rep = await f.enable();
    const seeded = await f.pointAfter(new Date(0));
    const seededBytes = await f.restore(rep, seeded.id);

    const job = async (op: string) => {
      const started = await f!.api<JobView>('POST', `/vaults/demo/replications/vm1/${op}`, op === 'test-failover' ? { point: seeded.id } : {});
      let j = started;
      await waitFor(async () => {
        j = await f!.api<JobView>('GET', `/vaults/demo/jobs/${started.id}`);
        return ['succeeded', 'failed', 'cancelled'].includes(j.state);
      }, 30_000, op);
      return j;
    };
    expect((await job('test-failover')).state).toBe('succeeded');
    const running = await f.api<{ testFailoverState: string; state: string; failover: { test: { disks: string[] } } }>('GET', '/vaults/demo/replications/vm1');
    expect(running).toMatchObject({ state: 'protected', testFailoverState: 'running' });

    // The source writes on; the agent ships it while the test copy runs.
    const file = await open(image, 'r+');
    await file.write(Buffer.alloc(4096, 0x5a), 0, 4096, MiB);
    await file.close();
    const written = new Date();
    const during = await f.pointAfter(written);
    const after = await f.restore(rep, during.id);
    expect(after.subarray(MiB, MiB + 4096).equals(Buffer.alloc(4096, 0x5a))).toBe(true);
    const points = await f.points();
    expect(points.filter((p) => Date.parse(p.capturedAt) > Date.parse(seeded.capturedAt)).length).toBeGreaterThanOrEqual(1);
    // The test copy's disk still holds the bytes of the point it booted, not the new write.
    expect((await readFile(running.failover.test.disks[0] as string)).equals(seededBytes)).toBe(true);

    expect((await job('test-failover-cleanup')).state).toBe('succeeded');
    const again = await f.pointAfter(new Date());
    expect(again.id).not.toBe(during.id);
  });
});
