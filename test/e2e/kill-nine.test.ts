import { afterAll, describe, expect, it } from 'vitest';
import { figure } from '../helpers/figures.js';
import { runKillNine, type KillRecord } from '../helpers/kill-nine.js';

/** Kill points in CI; `npm run soak` sets REFUGE_KILL_POINTS (60). */
const POINTS = Number(process.env.REFUGE_KILL_POINTS ?? '13');
const SEED = Number(process.env.REFUGE_KILL_SEED ?? String(Date.now() % 1_000_000));

/**
 * Reliability R1: kill -9 of the agent, the replicator and the vault (and of `refuge store prune` / `gc`) at random
 * moments of seeding, incremental points, commits, pruning, garbage collection and test failover (harness:
 * test/helpers/kill-nine.ts). Every kill point must end with a clean store, a point holding the image's exact bytes
 * reached without a full resync, and any interrupted job succeeded on its point's bytes or failed with a reason.
 */
describe('R1 kill -9 at random moments', () => {
  let cleanup: (() => Promise<void>) | undefined;
  afterAll(async () => cleanup?.());

  it(`survives ${POINTS} kill points (seed ${SEED}) with no corrupt point, no full resync, clean jobs`, async () => {
    const run = await runKillNine({ points: POINTS, seed: SEED, log: (l) => process.stdout.write(`[kill] ${l}\n`) });
    cleanup = () => run.cleanup();
    const records: KillRecord[] = run.records;
    expect(records).toHaveLength(POINTS);
    expect(records.flatMap((r) => r.problems)).toEqual([]);
    expect(records.filter((r) => r.fullResync)).toEqual([]);
    // The seed, killed three times, ships the image's data once (plus chunks in flight at each kill).
    const seeded = records.filter((r) => r.phase === 'seeding').reduce((n, r) => n + r.shippedBytes, 0);
    expect(seeded).toBeLessThanOrEqual(24 * 1024 * 1024 + 3 * 16 * 1024 * 1024);
    const phases = new Set(records.map((r) => r.phase));
    if (POINTS >= 8) expect([...phases].sort()).toEqual(['commit', 'failover', 'gc', 'incremental', 'prune', 'seeding']);
    const jobs = records.filter((r) => r.job);
    figure('R1', {
      seed: SEED,
      killPoints: records.length,
      killed: Object.fromEntries(['agent', 'replicator', 'vault', 'store prune', 'store gc'].map((t) => [t, records.filter((r) => r.killed.includes(t)).length])),
      corruptPoints: records.reduce((n, r) => n + r.problems.length, 0),
      fullResyncs: records.filter((r) => r.fullResync).length,
      longestRecoverySeconds: Math.max(...records.map((r) => r.recoverySeconds)),
      shippedBytes: records.reduce((n, r) => n + r.shippedBytes, 0),
      changedBytes: records.reduce((n, r) => n + r.changedBytes, 0),
      jobs: { succeeded: jobs.filter((r) => r.job?.startsWith('succeeded')).length, failedCleanly: jobs.filter((r) => r.job?.startsWith('failed')).length },
    });
  }, 120_000 + POINTS * 45_000);
});
