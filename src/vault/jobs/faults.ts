import { RefugeError } from '../../core/errors.js';
import type { JobDefinition, TaskDefinition } from './definitions.js';

/** Replaces every task named in `names` by `wrap(task, definition)`; the one mechanism both fault wrappers use. */
function wrapTasks(
  definitions: JobDefinition<never>[],
  names: readonly string[],
  wrap: (t: TaskDefinition<never>, d: JobDefinition<never>) => TaskDefinition<never>,
): JobDefinition<never>[] {
  if (names.length === 0) return definitions;
  return definitions.map((d) => ({ ...d, tasks: d.tasks.map((t) => (names.includes(t.name) ? wrap(t, d) : t)) }));
}

/**
 * Fault injection for tests of durability, as a wrapper assembled once at start-up: every task named in `names`
 * holds (stays running, doing nothing) until its job is aborted, so a test can kill the vault process at an exact
 * point of a job. Enabled only by the vault's `holdTasks` option (env REFUGE_TEST_HOLD_TASKS for a process).
 */
export function holdTasks(definitions: JobDefinition<never>[], names: readonly string[]): JobDefinition<never>[] {
  return wrapTasks(definitions, names, (t) => ({
    name: t.name,
    run: (ctx) =>
      new Promise<void>((_resolve, reject) => {
        ctx.log.warn({ task: t.name }, 'task held by fault injection (REFUGE_TEST_HOLD_TASKS)');
        ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason as Error), { once: true });
      }),
  }));
}

/**
 * A manual approval before each task named in `names` (env REFUGE_TEST_APPROVE_TASKS for a process), the way a
 * recovery plan's manual step asks for one: the job waits for input until someone resumes it; approved, the task
 * runs; rejected, the job fails. Lets the portal's and the CLI's approval flows be tested on any job.
 */
export function approveTasks(definitions: JobDefinition<never>[], names: readonly string[]): JobDefinition<never>[] {
  return wrapTasks(definitions, names, (t, d) => ({
    name: t.name,
    run: async (ctx) => {
      const answer = ctx.input as { approved?: boolean; by?: string; comment?: string } | undefined;
      if (answer === undefined) return ctx.waitForInput(`approve ${d.type} step '${t.name}' to go on`);
      if (answer.approved !== true) throw new RefugeError('cancelled', `step '${t.name}' was rejected by ${answer.by ?? 'someone'}${answer.comment ? `: ${answer.comment}` : ''}`);
      await t.run(ctx);
    },
  }));
}
