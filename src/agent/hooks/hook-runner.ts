import type { AppHook, HookContext } from './app-hooks.js';

/** The machine, quiesced (or not): cut, then `release`. */
export interface Quiesced {
  /** True when every hook's `before` succeeded: a cut taken now is app-consistent. */
  readonly appConsistent: boolean;
  /** Why not, one message per failed hook (the agent reports them as an event). */
  readonly failures: string[];
  /** Runs the `after` of every hook that was started, in reverse order; resolves with their failures. */
  release(): Promise<string[]>;
}

/**
 * Runs the app-consistency hooks' `before`, each within `timeoutMs`. If one fails or times out, the hooks started
 * so far are released at once (nothing stays frozen while the agent goes on) and the cut that follows is
 * crash-consistent: a hook can cost consistency, never availability. `after` gets the same timeout; a hook that
 * hangs there is abandoned (and killed, for commands) and reported.
 */
export async function quiesce(hooks: readonly AppHook[], ctx: HookContext, timeoutMs: number): Promise<Quiesced> {
  const started: AppHook[] = [];
  const failures: string[] = [];
  for (const h of hooks) {
    started.push(h);
    try {
      await h.before(ctx, AbortSignal.timeout(timeoutMs));
    } catch (err) {
      failures.push(`${h.description}: ${(err as Error).message}`);
      break;
    }
  }
  const afterAll = async (appConsistent: boolean): Promise<string[]> => {
    const errors: string[] = [];
    for (const h of started.splice(0).reverse()) {
      try {
        await h.after({ ...ctx, appConsistent }, AbortSignal.timeout(timeoutMs));
      } catch (err) {
        errors.push(`${h.description}: ${(err as Error).message}`);
      }
    }
    return errors;
  };
  if (failures.length > 0) {
    failures.push(...(await afterAll(false)));
    return { appConsistent: false, failures, release: async () => [] };
  }
  return { appConsistent: true, failures, release: () => afterAll(true) };
}
