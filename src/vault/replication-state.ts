/**
 * The life of a replication, as a state machine. One function answers "which operations are allowed now", and
 * the API, the CLI and the orchestration all ask it, so the rules exist once. Semantics follow ASR's replicated
 * items (../shared/docs/reference-asr.md): after a test failover only its cleanup is allowed; a failover must be
 * committed (or its point changed) before anything else; a committed failover is re-protected in the other
 * direction; failback is a planned failover back home followed by a re-protect forward.
 *
 *   seeding --first point--> protected --planned-failover / failover--> failing-over --> failed-over
 *      ^                       |  ^  ^                                       (fails: back)    |  ^
 *      |                       |  |  +-- resyncing / repairing (return)                       |  change-recovery-point
 *      |                       |  +-- reprotecting <--reprotect-- failover-committed <--commit-+
 *      +-- disable from seeding, protected, failover-committed (disabling, then gone)
 *   test failover runs beside `protected`: none --> starting --> running --cleanup--> cleaning-up --> none
 *   any running operation job: only `cancel` (the job stops; the replication returns to where it began)
 *
 * A re-protected replication runs *reversed* (source: the former recovery site, target: the machine's home
 * site); in that direction `planned-failover` is called `failback`.
 */

export const REPLICATION_STATES = [
  'seeding',
  'protected',
  'resyncing',
  'repairing',
  'failing-over',
  'planned-failing-over',
  'failed-over',
  'changing-point',
  'failover-committed',
  'reprotecting',
  'disabling',
] as const;
export type ReplicationState = (typeof REPLICATION_STATES)[number];

export const TEST_FAILOVER_STATES = ['none', 'starting', 'running', 'cleaning-up'] as const;
export type TestFailoverState = (typeof TEST_FAILOVER_STATES)[number];

/** Operations that run as jobs (each has a job type of the same name). */
export const JOB_OPERATIONS = [
  'test-failover',
  'test-failover-cleanup',
  'planned-failover',
  'failover',
  'change-recovery-point',
  'commit',
  'reprotect',
  'failback',
  'disable',
  'resync',
  'repair',
] as const;
export type JobOperation = (typeof JOB_OPERATIONS)[number];

/** Every operation a replication may list: the job operations plus `cancel` of its running job. */
export const OPERATIONS = [...JOB_OPERATIONS, 'cancel'] as const;
export type Operation = (typeof OPERATIONS)[number];

/** Operations that pick a recovery point (body `point`: a point choice). */
export const POINT_OPERATIONS: readonly Operation[] = ['test-failover', 'failover', 'change-recovery-point'];

export interface ReplicationStatus {
  state: ReplicationState;
  testFailoverState: TestFailoverState;
  /** A job operating on the replication blocks every other operation (but `cancel`) until it ends. */
  activeJobId: string | null;
}

/** What else decides the allowed operations: whether the replication runs reversed (after a re-protect). */
export interface StatusContext {
  reversed?: boolean;
}

export function allowedOperations(s: ReplicationStatus & StatusContext): Operation[] {
  if (s.activeJobId !== null) return ['cancel'];
  if (s.testFailoverState === 'running') return ['test-failover-cleanup'];
  if (s.testFailoverState !== 'none') return [];
  switch (s.state) {
    case 'seeding':
      return ['resync', 'repair', 'disable'];
    case 'protected':
      return ['test-failover', s.reversed ? 'failback' : 'planned-failover', 'failover', 'resync', 'repair', 'disable'];
    case 'failed-over':
      return ['change-recovery-point', 'commit'];
    case 'failover-committed':
      return ['reprotect', 'disable'];
    default:
      return [];
  }
}

type StatusChange = Partial<Pick<ReplicationStatus, 'state' | 'testFailoverState'>>;

/**
 * How an operation moves the status when it is accepted (`begin`), when its job succeeds (`succeed`) and when it
 * fails or is cancelled (`fail`). Orchestration applies `begin` in the same transaction that creates the job,
 * guarded by the status it read, so of two concurrent requests exactly one wins.
 */
export interface Transition {
  begin: StatusChange;
  succeed: StatusChange;
  /** 'previous' restores the status the operation began from. */
  fail: StatusChange | 'previous';
}

export const TRANSITIONS: Record<JobOperation, Transition> = {
  'test-failover': { begin: { testFailoverState: 'starting' }, succeed: { testFailoverState: 'running' }, fail: { testFailoverState: 'running' } },
  'test-failover-cleanup': { begin: { testFailoverState: 'cleaning-up' }, succeed: { testFailoverState: 'none' }, fail: { testFailoverState: 'running' } },
  'planned-failover': { begin: { state: 'planned-failing-over' }, succeed: { state: 'failed-over' }, fail: 'previous' },
  failover: { begin: { state: 'failing-over' }, succeed: { state: 'failed-over' }, fail: 'previous' },
  failback: { begin: { state: 'planned-failing-over' }, succeed: { state: 'failed-over' }, fail: 'previous' },
  // A failed change leaves no machine running from the old point: the failover stands, the operator picks again.
  'change-recovery-point': { begin: { state: 'changing-point' }, succeed: { state: 'failed-over' }, fail: { state: 'failed-over' } },
  commit: { begin: {}, succeed: { state: 'failover-committed' }, fail: 'previous' },
  reprotect: { begin: { state: 'reprotecting' }, succeed: { state: 'protected' }, fail: 'previous' },
  disable: { begin: { state: 'disabling' }, succeed: {}, fail: 'previous' },
  resync: { begin: { state: 'resyncing' }, succeed: { state: 'protected' }, fail: 'previous' },
  repair: { begin: { state: 'repairing' }, succeed: { state: 'protected' }, fail: 'previous' },
};

/**
 * Whether the source agent should keep capturing and shipping changes in this state: while protected, and while
 * an operation needs its points (a planned failover waits for the final point, a re-protect for the first point in
 * the new direction, a resync for a point compared chunk by chunk).
 */
export function isReplicating(state: ReplicationState): boolean {
  return ['seeding', 'protected', 'resyncing', 'repairing', 'planned-failing-over', 'reprotecting'].includes(state);
}
