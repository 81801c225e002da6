import { spawn } from 'node:child_process';
import { RefugeError } from '../../core/errors.js';

/** What a hook is told about the point being cut (a command sees it as REFUGE_* environment variables). */
export interface HookContext {
  machine: string;
  disks: string[];
  /** The consistency-group cut this point belongs to, if any. */
  groupCutId?: string;
}

/**
 * An app-consistency hook: `before` quiesces what runs on the machine (flush and freeze), `after` lets it go on.
 * The agent cuts between the two. Contract (hook-runner.ts relies on it):
 * - `before` may fail or hang: the runner gives up on it after its timeout, calls `after` anyway (a half-done
 *   freeze must be undone) and cuts a crash-consistent point instead.
 * - `after` is always called once for every `before` that was started, with whether the cut was taken
 *   app-consistent; it must be safe to call when `before` did nothing.
 */
export interface AppHook {
  readonly description: string;
  before(ctx: HookContext, signal: AbortSignal): Promise<void>;
  after(ctx: HookContext & { appConsistent: boolean }, signal: AbortSignal): Promise<void>;
}

const STDERR_TAIL = 500;

/**
 * Runs an operator's command (`sh -c COMMAND`) before and after the cut, with the context in its environment:
 * REFUGE_HOOK_PHASE (pre | post), REFUGE_MACHINE, REFUGE_DISKS (comma-separated), REFUGE_GROUP_CUT (when the point
 * is part of a consistency-group cut) and, after the cut, REFUGE_CONSISTENCY (app | crash: what the point became).
 * A non-zero exit fails the phase. On timeout the command's whole process group is killed.
 */
export class CommandHook implements AppHook {
  constructor(private readonly command: string) {}

  get description(): string {
    return `command '${this.command}'`;
  }

  before(ctx: HookContext, signal: AbortSignal): Promise<void> {
    return this.run({ ...this.env(ctx), REFUGE_HOOK_PHASE: 'pre' }, signal);
  }

  after(ctx: HookContext & { appConsistent: boolean }, signal: AbortSignal): Promise<void> {
    return this.run({ ...this.env(ctx), REFUGE_HOOK_PHASE: 'post', REFUGE_CONSISTENCY: ctx.appConsistent ? 'app' : 'crash' }, signal);
  }

  private env(ctx: HookContext): Record<string, string> {
    return { REFUGE_MACHINE: ctx.machine, REFUGE_DISKS: ctx.disks.join(','), ...(ctx.groupCutId ? { REFUGE_GROUP_CUT: ctx.groupCutId } : {}) };
  }

  private run(env: Record<string, string>, signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      // Its own process group, so a timeout kills the command and whatever it started.
      const child = spawn('/bin/sh', ['-c', this.command], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-STDERR_TAIL)));
      const kill = () => {
        try {
          if (child.pid) process.kill(-child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      };
      signal.addEventListener('abort', kill, { once: true });
      child.once('error', (err) => reject(RefugeError.wrap(err, `hook ${this.description} could not start`)));
      child.once('close', (code, sig) => {
        signal.removeEventListener('abort', kill);
        if (signal.aborted) return reject(new RefugeError('unavailable', `hook ${this.description} (${env.REFUGE_HOOK_PHASE}) timed out and was killed`));
        if (code === 0) return resolve();
        reject(new RefugeError('failed_precondition', `hook ${this.description} (${env.REFUGE_HOOK_PHASE}) exited with ${code ?? sig}${stderr.trim() ? `: ${stderr.trim()}` : ''}`));
      });
    });
  }
}
