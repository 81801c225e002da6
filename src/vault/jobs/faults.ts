import type { JobDefinition } from './definitions.js';

/**
 * Fault injection for tests of durability, as a wrapper assembled once at start-up: every task named in `names`
 * holds (stays running, doing nothing) until its job is aborted, so a test can kill the vault process at an exact
 * point of a job. Enabled only by the vault's `holdTasks` option (env REFUGE_TEST_HOLD_TASKS for a process).
 */
export function holdTasks(definitions: JobDefinition<never>[], names: readonly string[]): JobDefinition<never>[] {
  if (names.length === 0) return definitions;
  return definitions.map((d) => ({
    ...d,
    tasks: d.tasks.map((t) => (names.includes(t.name)
      ? {
          name: t.name,
          run: (ctx) =>
            new Promise<void>((_resolve, reject) => {
              ctx.log.warn({ task: t.name }, 'task held by fault injection (REFUGE_TEST_HOLD_TASKS)');
              ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason as Error), { once: true });
            }),
        }
      : t)),
  }));
}
