import { describe, expect, it } from 'vitest';
import {
  JOB_OPERATIONS,
  OPERATIONS,
  REPLICATION_STATES,
  TEST_FAILOVER_STATES,
  TRANSITIONS,
  allowedOperations,
  isReplicating,
  type Operation,
  type ReplicationState,
  type ReplicationStatus,
} from '../../../src/vault/replication-state.js';

const status = (s: Partial<ReplicationStatus>): ReplicationStatus => ({ state: 'protected', testFailoverState: 'none', activeJobId: null, ...s });

/** The whole table: what each state allows (no job running, no test failover), as ASR's replicated items do. */
const ALLOWED: Record<ReplicationState, Operation[]> = {
  seeding: ['resync', 'repair', 'disable'],
  protected: ['test-failover', 'planned-failover', 'failover', 'resync', 'repair', 'disable'],
  resyncing: [],
  repairing: [],
  'failing-over': [],
  'planned-failing-over': [],
  'failed-over': ['change-recovery-point', 'commit'],
  'changing-point': [],
  'failover-committed': ['reprotect', 'disable'],
  reprotecting: [],
  disabling: [],
};

describe('replication state machine', () => {
  it.each(REPLICATION_STATES.map((s) => [s, ALLOWED[s]] as const))('%s allows exactly %o and refuses every other operation', (state, allowed) => {
    const got = allowedOperations(status({ state }));
    expect(got).toEqual(allowed);
    for (const op of OPERATIONS) expect(got.includes(op)).toBe(allowed.includes(op));
  });

  it('a re-protected (reversed) replication offers failback instead of planned failover', () => {
    expect(allowedOperations({ ...status({}), reversed: true })).toEqual(['test-failover', 'failback', 'failover', 'resync', 'repair', 'disable']);
    expect(allowedOperations({ ...status({ state: 'failed-over' }), reversed: true })).toEqual(['change-recovery-point', 'commit']);
  });

  it('while a job runs, only cancel is allowed, in every state', () => {
    for (const state of REPLICATION_STATES) {
      for (const t of TEST_FAILOVER_STATES) expect(allowedOperations(status({ state, testFailoverState: t, activeJobId: 'job_x' }))).toEqual(['cancel']);
    }
  });

  it('a running test failover allows only its cleanup; starting or cleaning up allows nothing', () => {
    expect(allowedOperations(status({ testFailoverState: 'running' }))).toEqual(['test-failover-cleanup']);
    expect(allowedOperations(status({ testFailoverState: 'starting' }))).toEqual([]);
    expect(allowedOperations(status({ testFailoverState: 'cleaning-up' }))).toEqual([]);
  });

  it('leaves a failed test failover needing cleanup (as ASR), keeps a failover when a point change fails, restores the rest', () => {
    expect(TRANSITIONS['test-failover'].fail).toEqual({ testFailoverState: 'running' });
    expect(TRANSITIONS['change-recovery-point'].fail).toEqual({ state: 'failed-over' });
    for (const op of ['failover', 'planned-failover', 'failback', 'commit', 'reprotect', 'disable', 'resync', 'repair'] as const) expect(TRANSITIONS[op].fail).toBe('previous');
  });

  it('every job operation is allowed somewhere, and its job ends in a state with a way on', () => {
    for (const op of JOB_OPERATIONS) {
      const from = REPLICATION_STATES.flatMap((state) =>
        [false, true].flatMap((reversed) => TEST_FAILOVER_STATES.filter((t) => allowedOperations({ ...status({ state, testFailoverState: t }), reversed }).includes(op)).map((t) => ({ state, t }))),
      );
      expect(from.length, op).toBeGreaterThan(0);
      const t = TRANSITIONS[op];
      const after = status({ ...from[0], ...t.succeed });
      if (op !== 'disable') expect(allowedOperations(after).length, `${op} succeeds into a dead end`).toBeGreaterThan(0);
    }
  });

  it('the agent replicates while protected and while an operation needs its points, never after a failover', () => {
    const replicating = REPLICATION_STATES.filter(isReplicating);
    expect(replicating).toEqual(['seeding', 'protected', 'resyncing', 'repairing', 'planned-failing-over', 'reprotecting']);
  });
});
