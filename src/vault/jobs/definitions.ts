import type { Logger } from '../../core/log.js';
import type { RefugeError } from '../../core/errors.js';

/**
 * A job is a long-running operation made of ordered tasks. The engine records each task's state and progress in
 * the database as it goes; after a restart a job continues with its first task that has not succeeded, so every
 * task must be idempotent (safe to run again after it was interrupted).
 */

export const JOB_STATES = ['queued', 'running', 'succeeded', 'failed'] as const;
export type JobState = (typeof JOB_STATES)[number];
export const TASK_STATES = ['pending', 'running', 'succeeded', 'failed'] as const;
export type TaskState = (typeof TASK_STATES)[number];

export interface JobInfo<P = unknown> {
  id: string;
  vaultId: string;
  type: string;
  replicationId: string | null;
  params: P;
}

export interface TaskContext<P = unknown> {
  job: JobInfo<P>;
  /** Results shared by the job's tasks and shown to the user; saved after every task. */
  result: Record<string, unknown>;
  /** Reports the running task's progress (0..1) and what it is doing; saved at most a few times a second. */
  progress(fraction: number, message?: string): void;
  signal: AbortSignal;
  log: Logger;
}

export interface TaskDefinition<P = unknown> {
  name: string;
  run(ctx: TaskContext<P>): Promise<void>;
}

export interface JobDefinition<P = unknown> {
  type: string;
  tasks: TaskDefinition<P>[];
  /** Runs once the last task succeeded. Must be idempotent. */
  onSucceeded?(ctx: TaskContext<P>): Promise<void>;
  /** Runs when a task failed, with the error. Must be idempotent and must not throw for expected states. */
  onFailed?(ctx: TaskContext<P>, error: RefugeError): Promise<void>;
}

export interface TaskView {
  seq: number;
  name: string;
  state: TaskState;
  progress: number;
  message: string | null;
  startedAt: string | null;
  endedAt: string | null;
}

export interface JobView {
  id: string;
  vaultId: string;
  type: string;
  replicationId: string | null;
  state: JobState;
  /** Overall progress 0..1: finished tasks plus the running task's fraction, over the task count. */
  progress: number;
  params: unknown;
  result: Record<string, unknown>;
  error: { code: string; message: string; hint?: string } | null;
  createdAt: string;
  startedAt: string | null;
  endedAt: string | null;
  tasks: TaskView[];
}
