import { RefugeError } from '../../core/errors.js';
import { sleep } from '../../core/durations.js';
import type { StoreBackend } from '../backend.js';

/**
 * Cross-cutting behaviour as backends wrapping backends (same interface), stacked once in open-backend.ts:
 * retries of failures a retry can cure, and a limit on requests in flight.
 */

export class RetryingBackend implements StoreBackend {
  readonly location: string;
  constructor(
    private readonly inner: StoreBackend,
    private readonly o: { attempts?: number; baseDelayMs?: number } = {},
  ) {
    this.location = inner.location;
  }

  private async retry<T>(call: () => Promise<T>): Promise<T> {
    const attempts = this.o.attempts ?? 5;
    for (let attempt = 1; ; attempt++) {
      try {
        return await call();
      } catch (err) {
        if (!(err instanceof RefugeError) || !err.retryable || attempt >= attempts) throw err;
        await sleep((this.o.baseDelayMs ?? 100) * 2 ** (attempt - 1) * (0.5 + Math.random()));
      }
    }
  }

  get(key: string) {
    return this.retry(() => this.inner.get(key));
  }
  getRange(key: string, offset: number, length: number, into?: Uint8Array) {
    return this.retry(() => this.inner.getRange(key, offset, length, into));
  }
  put(key: string, data: Uint8Array) {
    return this.retry(() => this.inner.put(key, data)); // puts are idempotent, so a retry after a lost reply is safe
  }
  exists(key: string) {
    return this.retry(() => this.inner.exists(key));
  }
  list(prefix: string) {
    return this.retry(() => this.inner.list(prefix));
  }
  delete(key: string) {
    return this.retry(() => this.inner.delete(key));
  }
}

export class ConcurrencyLimitedBackend implements StoreBackend {
  readonly location: string;
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly inner: StoreBackend,
    private readonly limit: number,
  ) {
    this.location = inner.location;
  }

  private async run<T>(call: () => Promise<T>): Promise<T> {
    while (this.active >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.active++;
    try {
      return await call();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }

  get(key: string) {
    return this.run(() => this.inner.get(key));
  }
  getRange(key: string, offset: number, length: number, into?: Uint8Array) {
    return this.run(() => this.inner.getRange(key, offset, length, into));
  }
  put(key: string, data: Uint8Array) {
    return this.run(() => this.inner.put(key, data));
  }
  exists(key: string) {
    return this.run(() => this.inner.exists(key));
  }
  list(prefix: string) {
    return this.run(() => this.inner.list(prefix));
  }
  delete(key: string) {
    return this.run(() => this.inner.delete(key));
  }
}
