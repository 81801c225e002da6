/**
 * The life of a replication, as a state machine. One function answers "which operations are allowed now", and
 * the API, the CLI and the orchestration all ask it, so the rules exist once. Semantics follow ASR's replicated
 * items: after a test failover only its cleanup is allowed; a failover must be committed before anything else.
 *
 *   seeding --first point--> protected --failover--> failing-over --> failed-over --commit--> failover-committed
 *                               |  ^                      |(fails)
 *                               |  +----------------------+
 *   test failover runs beside `protected`: none --> starting --> running --cleanup--> cleaning-up --> none
 */

export const REPLICATION_STATES = ['seeding', 'protected', 'failing-over', 'failed-over', 'failover-committed', 'disabling'] as const;
export type ReplicationState = (typeof REPLICATION_STATES)[number];

export const TEST_FAILOVER_STATES = ['none', 'starting', 'running', 'cleaning-up'] as const;
export type TestFailoverState = (typeof TEST_FAILOVER_STATES)[number];

export const OPERATIONS = ['test-failover', 'test-failover-cleanup', 'failover', 'commit', 'disable'] as const;
export type Operation = (typeof OPERATIONS)[number];

export interface ReplicationStatus {
  state: ReplicationState;
  testFailoverState: TestFailoverState;
  /** A job operating on the replication blocks every other operation until it ends. */
  activeJobId: string | null;
}

export function allowedOperations(s: ReplicationStatus): Operation[] {
  if (s.activeJobId !== null) return [];
  if (s.testFailoverState === 'running') return ['test-failover-cleanup'];
  if (s.testFailoverState !== 'none') return [];
  switch (s.state) {
    case 'seeding':
      return ['disable'];
    case 'protected':
      return ['test-failover', 'failover', 'disable'];
    case 'failed-over':
      return ['commit'];
    case 'failover-committed':
      return ['disable'];
    default:
      return [];
  }
}

/**
 * How an operation moves the status when it is accepted (`begin`), when its job succeeds (`succeed`) and when it
 * fails (`fail`). Orchestration applies `begin` in the same transaction that creates the job, guarded by the
 * status it read, so of two concurrent requests exactly one wins.
 */
export interface Transition {
  begin: Partial<Pick<ReplicationStatus, 'state' | 'testFailoverState'>>;
  succeed: Partial<Pick<ReplicationStatus, 'state' | 'testFailoverState'>>;
  /** 'previous' restores the status the operation began from. */
  fail: Partial<Pick<ReplicationStatus, 'state' | 'testFailoverState'>> | 'previous';
}

export const TRANSITIONS: Record<Operation, Transition> = {
  'test-failover': { begin: { testFailoverState: 'starting' }, succeed: { testFailoverState: 'running' }, fail: { testFailoverState: 'running' } },
  'test-failover-cleanup': { begin: { testFailoverState: 'cleaning-up' }, succeed: { testFailoverState: 'none' }, fail: { testFailoverState: 'running' } },
  failover: { begin: { state: 'failing-over' }, succeed: { state: 'failed-over' }, fail: 'previous' },
  commit: { begin: {}, succeed: { state: 'failover-committed' }, fail: 'previous' },
  disable: { begin: { state: 'disabling' }, succeed: {}, fail: 'previous' },
};

/** Whether the source agent should keep capturing and shipping changes in this state. */
export function isReplicating(state: ReplicationState): boolean {
  return state === 'seeding' || state === 'protected';
}
