import { isRefugeError } from '../../core/errors.js';
import { sleep } from '../../core/durations.js';

/**
 * Runs `fn` again after failures a retry can cure (a dropped connection, a replicator restarting: `retryable`
 * errors), with exponential backoff; anything else, or the last attempt's failure, is thrown. This is what makes a
 * disconnect mid-upload resume instead of failing the cut: chunks already stored are skipped by deduplication.
 */
export interface RetryPolicy {
  /** Tries in all, the first included (default 6: about 8 s of backoff before giving up). */
  attempts?: number;
  firstDelayMs?: number;
}

export async function retrying<T>(fn: () => Promise<T>, o: RetryPolicy & { signal?: AbortSignal } = {}): Promise<T> {
  const attempts = o.attempts ?? 6;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const retryable = isRefugeError(err) ? err.retryable : false;
      if (!retryable || attempt >= attempts || o.signal?.aborted) throw err;
      await sleep(Math.min(8000, (o.firstDelayMs ?? 250) * 2 ** (attempt - 1)), o.signal);
    }
  }
}
