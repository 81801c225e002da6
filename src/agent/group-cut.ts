import type { Logger } from '../core/log.js';
import type { GroupCutInstruction } from '../protocol/group-cut.js';
import type { CaptureMode, Cut } from './capture/capture-mode.js';
import type { GroupCutClient } from './group-client.js';

/**
 * Walks a consistency-group cut's barrier (../protocol/group-cut.ts): prepared, then writes held and paused, then,
 * once every member is paused, the cut. Writes are never held longer than the cut's pause window on our own clock,
 * whatever the vault does. Resolves with no cut when the group cut failed (reported to the vault when the failure
 * is ours; the vault already knows when it refused), and nothing is cut for it.
 */
export async function cutAtGroupBarrier(o: {
  instruction: GroupCutInstruction;
  client: GroupCutClient;
  capture: CaptureMode;
  cutNow: () => Promise<Cut>;
  signal: AbortSignal;
  /** Our own failure (as opposed to the vault's refusal), for the agent's event. */
  onFailure: (why: string) => void;
  log: Logger;
}): Promise<Cut | undefined> {
  const g = o.instruction;
  const fail = async (why: string) => {
    o.onFailure(why);
    await o.client.result(g.cutId, { error: why }).catch((err: unknown) => o.log.warn({ err }, 'group cut failure not delivered'));
  };
  const prepared = await o.client.barrier(g.cutId, 'prepared', o.signal);
  if (!prepared.proceed) return undefined;
  const release = (await o.capture.hold?.()) ?? (() => undefined);
  const pauseMs = g.pauseSeconds * 1000;
  let expired = false;
  const timer = setTimeout(() => {
    expired = true;
    release(); // never a stuck disk
  }, pauseMs);
  try {
    let unanswered: string | undefined;
    const paused = await o.client.barrier(g.cutId, 'paused', AbortSignal.any([o.signal, AbortSignal.timeout(pauseMs)])).catch((err: unknown) => {
      unanswered = (err as Error).message;
      return { proceed: false };
    });
    if (expired || unanswered !== undefined) {
      await fail(`writes were held for the pause window (${g.pauseSeconds} s) without every member pausing${unanswered ? ` (${unanswered})` : ''}`);
      return undefined;
    }
    // Still held here (the timer cannot fire between the answer and the cut: the hold waited for the writes in
    // flight, so the cut's own wait for them resolves at once, without a turn of the event loop): the cut is at the
    // barrier.
    return paused.proceed ? await o.cutNow() : undefined;
  } finally {
    clearTimeout(timer);
    release();
  }
}
