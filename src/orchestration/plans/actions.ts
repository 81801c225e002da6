import { RefugeError } from '../../core/errors.js';
import { sleep } from '../../core/durations.js';
import { requestJson } from '../../core/http-client.js';
import { run } from '../../core/processes.js';
import type { TaskContext } from '../../vault/jobs/definitions.js';
import type { PlanAction } from '../../vault/model.js';
import { scriptEnvironment, type ActionContext } from './context.js';

const DEFAULT_TIMEOUT_SECONDS = { script: 600, webhook: 30 } as const;
/** Webhook attempts and the pause before each retry (a receiver that is briefly down does not fail the plan). */
const WEBHOOK_RETRY_DELAYS_MS = [1000, 3000, 9000];
const TAIL = 2000;

/** What an action left in the job's result (`result.actions[<task name>]`). */
export interface ActionOutcome {
  kind: PlanAction['kind'];
  at: string;
  outcome: 'done' | 'approved' | 'skipped';
  detail?: Record<string, unknown>;
}

/**
 * Runs one pre/post action of a plan group. script: `/bin/sh -c <target>` in the vault process with the context
 * in its environment; a non-zero exit or a timeout fails the plan. webhook: POST of the context as JSON, retried
 * on network errors, 408, 429 and 5xx. manual: parks the job as waiting until someone approves (the plan goes on)
 * or rejects (the plan fails) through `POST /vaults/:vault/jobs/:job/resume`.
 */
export async function runAction(action: PlanAction, c: ActionContext, ctx: TaskContext, opts: { unattended?: boolean } = {}): Promise<ActionOutcome> {
  const at = new Date().toISOString();
  switch (action.kind) {
    case 'script':
      return { kind: 'script', at, outcome: 'done', detail: await runScript(action, c, ctx.signal) };
    case 'webhook':
      return { kind: 'webhook', at, outcome: 'done', detail: await callWebhook(action, c, ctx.signal) };
    case 'manual': {
      if (opts.unattended) return { kind: 'manual', at, outcome: 'skipped', detail: { reason: 'unattended run (a drill): manual actions are skipped' } };
      const input = ctx.input as { approved?: boolean; comment?: string; by?: string; at?: string } | undefined;
      if (input === undefined) ctx.waitForInput(`${action.name}: ${action.target}`);
      if (input.approved !== true) {
        throw new RefugeError('cancelled', `manual action '${action.name}' of group '${c.group.name}' was rejected${input.by ? ` by ${input.by}` : ''}${input.comment ? `: ${input.comment}` : ''}`);
      }
      return { kind: 'manual', at: input.at ?? at, outcome: 'approved', detail: { by: input.by ?? null, comment: input.comment ?? null } };
    }
  }
}

async function runScript(action: PlanAction, c: ActionContext, signal: AbortSignal): Promise<Record<string, unknown>> {
  signal.throwIfAborted();
  const timeoutMs = (action.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS.script) * 1000;
  const started = Date.now();
  const r = await run('/bin/sh', ['-c', action.target], { env: scriptEnvironment(c), timeoutMs });
  const detail = { exitCode: r.code, seconds: (Date.now() - started) / 1000, stdout: r.stdout.slice(-TAIL), stderr: r.stderr.slice(-TAIL) };
  if (r.code !== 0) {
    const why = r.code === null ? `was killed after its ${timeoutMs / 1000} s timeout` : `exited with ${r.code}`;
    throw new RefugeError('failed_precondition', `script action '${action.name}' of group '${c.group.name}' ${why}: ${r.stderr.trim().slice(-500) || '(no stderr)'}`, {
      hint: 'fix the script (its contract is in src/orchestration/plans/README.md) and restart the job',
      details: detail,
    });
  }
  return detail;
}

async function callWebhook(action: PlanAction, c: ActionContext, signal: AbortSignal): Promise<Record<string, unknown>> {
  const timeoutMs = (action.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS.webhook) * 1000;
  // A stable id per action run: a receiver can drop the duplicates retries may cause.
  const id = `${c.job}:${c.group.index}:${c.action.phase}:${action.name}`;
  const errors: string[] = [];
  for (let attempt = 0; ; attempt++) {
    signal.throwIfAborted();
    try {
      await requestJson('POST', action.target, { body: { id, ...c }, headers: { 'x-refuge-action-id': id }, timeoutMs, signal });
      return { url: redact(action.target), attempts: attempt + 1, errors };
    } catch (err) {
      const status = (err as RefugeError).details?.status as number | undefined;
      errors.push((err as Error).message);
      const retryable = status === undefined || status >= 500 || status === 429 || status === 408;
      const delay = WEBHOOK_RETRY_DELAYS_MS[attempt];
      if (!retryable || delay === undefined || signal.aborted) {
        throw new RefugeError('unavailable', `webhook action '${action.name}' of group '${c.group.name}' failed after ${attempt + 1} attempt(s): ${(err as Error).message}`, { cause: err });
      }
      await sleep(delay, signal);
    }
  }
}

/** A URL without its credentials or query (which may carry a token), for results and logs. */
const redact = (url: string): string => {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return '(invalid URL)';
  }
};
