import { RefugeError } from '../core/errors.js';

/**
 * The storage a replica store lives in: a flat namespace of immutable objects addressed by slash-separated keys.
 * Everything the store knows about chunks, points and their format is written once above this interface, so a
 * backend (filesystem, S3-compatible, Azure Blob) only moves bytes. Retry, concurrency limits and fault injection
 * are wrappers that implement this same interface.
 *
 * Contract every implementation must meet (tested by the shared backend suite):
 * - `put` is atomic: a concurrent or later `get` sees the whole object or none of it, even after a crash.
 * - `put` is idempotent: storing the same bytes under an existing key succeeds.
 * - `get` of a missing key throws a RefugeError with code `not_found`.
 * - `getRange` returns the bytes [offset, offset+length) of an object, fewer when the object ends sooner (none at
 *   or past its end), and throws `not_found` for a missing key; readers detect truncation by the length. With
 *   `into` (at least `length` bytes) a backend may read into it and return a view of it instead of allocating:
 *   restores reuse a few large buffers rather than allocate (and page-fault, and collect) a gigabyte of them.
 * - `list` returns every key that starts with `prefix`, sorted, including keys put before the call began.
 * - `delete` of a missing key succeeds.
 * - A key that is only the leading part of stored keys (`points/rep_x` when `points/rep_x/pt.json` exists) is a
 *   missing object. No key is ever both an object and the folder of others: the store's layout never needs it, and
 *   filesystems cannot hold it.
 * - An invalid key is a caller error (`invalid_argument`, not retryable), whatever the operation.
 * - Failures throw RefugeError; `retryable` is true only for failures a retry can cure.
 */
export interface StoreBackend {
  /** Where the objects live, for messages (e.g. `file:///var/lib/refuge/store`). Never contains secrets. */
  readonly location: string;
  get(key: string): Promise<Buffer>;
  getRange(key: string, offset: number, length: number, into?: Uint8Array): Promise<Buffer>;
  /**
   * The local file holding `key`, for a backend that keeps objects as files (the filesystem backend): the store's
   * worker threads then read ranges of immutable objects (packs) themselves, off the main thread. Optional; a
   * reader of the file must treat a missing file or a short read as "ask `getRange`" (the object may have moved).
   */
  localFile?(key: string): string;
  put(key: string, data: Uint8Array): Promise<void>;
  exists(key: string): Promise<boolean>;
  list(prefix: string): Promise<string[]>;
  delete(key: string): Promise<void>;
}

const KEY_RE = /^[a-z0-9][a-z0-9._-]*(\/[a-z0-9][a-z0-9._-]*)*$/;

/** Keys are lowercase, slash-separated and never path-like; backends call this before touching storage. */
export function assertValidKey(key: string): void {
  if (!KEY_RE.test(key) || key.includes('..')) {
    throw new RefugeError('invalid_argument', `invalid store key '${key}'`, { retryable: false });
  }
}

/** Range arguments are caller errors when not non-negative integers; backends call this before touching storage. */
export function assertValidRange(offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new RefugeError('invalid_argument', `invalid range ${offset}+${length}`, { retryable: false });
  }
}
