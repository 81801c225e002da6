import { describe, expect, it } from 'vitest';
import { TRANSITIONS, allowedOperations, type ReplicationStatus } from '../../../src/vault/replication-state.js';

const status = (s: Partial<ReplicationStatus>): ReplicationStatus => ({ state: 'protected', testFailoverState: 'none', activeJobId: null, ...s });

describe('replication state machine', () => {
  it.each([
    [status({ state: 'seeding' }), ['disable']],
    [status({}), ['test-failover', 'failover', 'disable']],
    [status({ testFailoverState: 'running' }), ['test-failover-cleanup']],
    [status({ testFailoverState: 'starting' }), []],
    [status({ testFailoverState: 'cleaning-up' }), []],
    [status({ state: 'failing-over' }), []],
    [status({ state: 'failed-over' }), ['commit']],
    [status({ state: 'failover-committed' }), ['disable']],
    [status({ state: 'disabling' }), []],
    [status({ activeJobId: 'job_x' }), []],
  ])('%o allows %o', (s, allowed) => {
    expect(allowedOperations(s)).toEqual(allowed);
  });

  it('leaves a failed test failover needing cleanup (as ASR), and restores the previous state for others', () => {
    expect(TRANSITIONS['test-failover'].fail).toEqual({ testFailoverState: 'running' });
    expect(TRANSITIONS.failover.fail).toBe('previous');
    expect(TRANSITIONS.disable.fail).toBe('previous');
  });

  it('every operation an allowed list can name begins from a state that allows it', () => {
    for (const op of Object.keys(TRANSITIONS)) {
      const somewhere = (['seeding', 'protected', 'failed-over', 'failover-committed'] as const).some((state) =>
        (['none', 'running'] as const).some((t) => allowedOperations(status({ state, testFailoverState: t })).includes(op as never)),
      );
      expect(somewhere, op).toBe(true);
    }
  });
});
