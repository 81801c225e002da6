import type { BatchEntry } from '../protocol/chunk-batch.js';
import { PATCH_GROUP_CHUNK_BYTES } from '../store/patched-chunks.js';

/** Whole chunks stored as one task for a worker thread: up to this many, or this many bytes. */
const GROUP_ENTRIES = 64;
const GROUP_BYTES = 1024 * 1024;
/**
 * How long a body may pause before the entries gathered so far are stored without waiting for their group to
 * fill. On a fast link a group fills in well under this; on a slow one, entries that arrived would otherwise sit
 * unstored until the group filled or the body ended. When a link is cut mid-batch, the body ends only when the
 * connection's reset arrives (or a timeout fires), after the agent's restarted upload has asked which chunks the
 * store lacks and been told "these": they then crossed the link twice (CI's link-faults d), 1.56x the burst).
 */
export const GROUP_IDLE_MS = 20;

const IDLE = Symbol('idle');

/** `next`, or IDLE if it has not settled within `ms`. */
async function orIdle<T>(next: Promise<T>, ms: number): Promise<T | typeof IDLE> {
  let timer: NodeJS.Timeout | undefined;
  const idle = new Promise<typeof IDLE>((resolve) => {
    timer = setTimeout(() => resolve(IDLE), ms);
  });
  try {
    return await Promise.race([next, idle]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A batch's entries as they arrive, gathered into groups of one kind, whole chunks or patches (one worker task each:
 * per-task round trips, not the hashing, were the cost of small chunks and of patches). A patch group is bounded
 * by the chunks it rebuilds. A group is also yielded when the body pauses for `idleMs` (GROUP_IDLE_MS), and if the
 * body breaks off, the entries already gathered are still yielded before the error: what arrived is stored, and a
 * retry sends only the rest.
 */
export async function* inGroups(entries: AsyncIterable<BatchEntry> | Iterable<BatchEntry>, idleMs = GROUP_IDLE_MS): AsyncGenerator<BatchEntry[]> {
  const it: AsyncIterator<BatchEntry> | Iterator<BatchEntry> = Symbol.asyncIterator in entries ? entries[Symbol.asyncIterator]() : entries[Symbol.iterator]();
  let group: BatchEntry[] = [];
  let bytes = 0;
  let pending: Promise<IteratorResult<BatchEntry>> | undefined;
  let done = false;
  const take = (): BatchEntry[] => {
    const g = group;
    group = [];
    bytes = 0;
    return g;
  };
  try {
    for (;;) {
      pending ??= Promise.resolve(it.next());
      // An empty group has nothing to store early: wait for the next entry as long as it takes.
      const next = group.length === 0 ? await pending : await orIdle(pending, idleMs);
      if (next === IDLE) {
        yield take();
        continue;
      }
      pending = undefined;
      if (next.done) {
        done = true;
        break;
      }
      const e = next.value;
      const patches = e.patch !== undefined;
      // A patch counts the chunk it rebuilds (the worker's output), a whole chunk its body.
      const size = e.patch ? e.patch.chunkLength : e.body.length;
      const limit = patches ? PATCH_GROUP_CHUNK_BYTES : GROUP_BYTES;
      // A group holds one kind; a patch group never rebuilds more than one worker buffer holds.
      if (group.length > 0 && ((group[0]?.patch !== undefined) !== patches || (patches && bytes + size > limit))) yield take();
      group.push(e);
      bytes += size;
      if (group.length >= GROUP_ENTRIES || bytes >= limit) yield take();
    }
  } catch (err) {
    done = true; // the source failed: it has nothing left to close
    if (group.length > 0) yield take(); // what arrived whole is stored before the failure is reported
    throw err;
  } finally {
    // Stopped early (a group failed to store): the body is not read further. Not awaited while an entry is still
    // awaited: an async source closes only after that read, which a stalled body may never finish.
    if (!done) {
      const closing = Promise.resolve(it.return?.()).catch(() => undefined);
      if (!pending) await closing;
    }
  }
  if (group.length > 0) yield take();
}
