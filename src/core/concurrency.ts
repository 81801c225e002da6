/**
 * Runs `fn` over `items` with at most `limit` calls in flight; rejects with the first failure (of `fn`, or of an
 * async iterable's next item) after letting the calls already started settle, so no work is left running behind
 * the caller's back. An async iterable is consumed as it yields (a request body read entry by entry) and closed
 * (`return()`) when a failure stops the run early.
 */
export async function forEachLimit<T>(
  items: Iterable<T> | AsyncIterable<T>,
  limit: number,
  fn: (item: T, index: number) => Promise<void>,
): Promise<void> {
  const iterator: Iterator<T> | AsyncIterator<T> = Symbol.asyncIterator in items ? items[Symbol.asyncIterator]() : items[Symbol.iterator]();
  let index = 0;
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    for (;;) {
      if (failure) return;
      let next: IteratorResult<T>;
      try {
        next = await iterator.next();
      } catch (error) {
        failure ??= { error };
        return;
      }
      if (next.done) return;
      const i = index++;
      try {
        await fn(next.value, i);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, limit) }, worker));
  if (failure) {
    await Promise.resolve(iterator.return?.()).catch(() => undefined);
    throw failure.error;
  }
}

/**
 * Runs the functions given one key one at a time, in call order; different keys run side by side. A failure is
 * its caller's alone: the next function for the key still runs.
 */
export class KeyedQueue {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const work = (this.tails.get(key) ?? Promise.resolve()).catch(() => undefined).then(fn);
    this.tails.set(key, work);
    const forget = () => {
      if (this.tails.get(key) === work) this.tails.delete(key);
    };
    work.then(forget, forget);
    return work;
  }
}
