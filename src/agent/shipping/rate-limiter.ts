import { sleep } from '../../core/durations.js';

/**
 * Limits the bytes an agent puts on the wire per second (the policy's or the operator's bandwidth cap). Each send
 * reserves the next free slot of the link: a send of n bytes waits until the sends before it would have drained at
 * the configured rate, so the average never exceeds it however many uploads run at once.
 */
export class RateLimiter {
  private nextFreeAt = 0;

  constructor(private bytesPerSecond: number) {}

  get rate(): number {
    return this.bytesPerSecond;
  }

  setRate(bytesPerSecond: number): void {
    this.bytesPerSecond = bytesPerSecond;
  }

  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    if (!(this.bytesPerSecond > 0)) return;
    const now = Date.now();
    const start = Math.max(now, this.nextFreeAt);
    this.nextFreeAt = start + (bytes * 1000) / this.bytesPerSecond;
    if (start > now) await sleep(start - now, signal);
  }
}
