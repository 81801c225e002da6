import { RefugeError } from '../core/errors.js';

/**
 * Several chunk uploads in one request body (docs/protocol.md, "Chunk uploads"): each upload costs the replicator
 * a request (TLS, HTTP, authentication, finding the replication's store) that outweighs the chunk itself when the
 * chunk travels as a small patch, so the agent sends them together. Each entry is what one `PUT /chunks/{hash}`
 * carries, framed by a fixed header (big-endian):
 *
 *   [u8 flags: 1 zstd, 2 patch, 4 patch of zeros][32 bytes chunk SHA-256][32 bytes base SHA-256 (zeros unless a patch
 *   of a stored base)][u32 chunk length (patches; else 0)][u32 body length][body]
 */

export const BATCH_CONTENT_TYPE = 'application/vnd.refuge.chunk-batch';
/** At most this many entries per batch: bounds the answer and the work behind one request. */
export const MAX_BATCH_ENTRIES = 256;
/** The agent closes a batch before it passes this many bytes (one entry alone may pass it). */
export const BATCH_TARGET_BYTES = 4 * 1024 * 1024;
/** Per-entry framing. */
export const BATCH_ENTRY_HEADER = 1 + 32 + 32 + 4 + 4;
const HEADER = BATCH_ENTRY_HEADER;
const COMPRESSED = 1;
const PATCH = 2;
const ZERO_BASE = 4;

export interface BatchEntry {
  hash: string;
  body: Buffer;
  compressed: boolean;
  /** A patch of `base` (null: a chunk of zeros) rebuilding `chunkLength` bytes. */
  patch?: { base: string | null; chunkLength: number };
}

export function encodeBatch(entries: readonly BatchEntry[]): Buffer {
  const out = Buffer.allocUnsafe(entries.reduce((n, e) => n + HEADER + e.body.length, 0));
  let at = 0;
  for (const e of entries) {
    out.fill(0, at, at + HEADER);
    out[at] = (e.compressed ? COMPRESSED : 0) | (e.patch ? PATCH : 0) | (e.patch && e.patch.base === null ? ZERO_BASE : 0);
    out.write(e.hash, at + 1, 32, 'hex');
    if (e.patch?.base) out.write(e.patch.base, at + 33, 32, 'hex');
    out.writeUInt32BE(e.patch?.chunkLength ?? 0, at + 65);
    out.writeUInt32BE(e.body.length, at + 69);
    e.body.copy(out, at + HEADER);
    at += HEADER + e.body.length;
  }
  return out;
}

/** The entries of a batch body; a body that does not frame exactly is an `invalid_argument` error. */
export function decodeBatch(body: Buffer): BatchEntry[] {
  const entries: BatchEntry[] = [];
  for (let at = 0; at < body.length; ) {
    const length = entryLength(body.subarray(at), entries.length);
    entries.push(entryOf(body.subarray(at, at + length), entries.length));
    at += length;
  }
  return entries;
}

/**
 * The entries of a batch body as it arrives, each as soon as its last byte is in: the replicator stores them while
 * the rest is on the wire, so a connection cut mid-batch leaves every entry that arrived whole stored, and the
 * agent's retry (asking again which chunks are missing) resends only the others. An entry whose body would pass
 * `maxEntryBytes`, a body that ends inside an entry, or more than MAX_BATCH_ENTRIES entries, are `invalid_argument`.
 */
export async function* readBatch(body: AsyncIterable<Buffer>, maxEntryBytes: number): AsyncGenerator<BatchEntry> {
  let pending: Buffer[] = [];
  let have = 0;
  let count = 0;
  for await (const piece of body) {
    pending.push(piece);
    have += piece.length;
    while (have >= HEADER) {
      const head = pending[0] as Buffer;
      const joined = head.length >= HEADER ? head : Buffer.concat(pending);
      if (joined !== head) pending = [joined];
      if (joined.readUInt32BE(69) > maxEntryBytes) throw new RefugeError('invalid_argument', `chunk batch entry ${count} is longer than ${maxEntryBytes} bytes`);
      const length = entryLength(joined, count);
      if (have < length) break;
      const all = pending.length === 1 ? joined : Buffer.concat(pending);
      yield entryOf(all.subarray(0, length), count++);
      const rest = all.subarray(length);
      pending = rest.length > 0 ? [rest] : [];
      have = rest.length;
    }
  }
  if (have > 0) throw new RefugeError('invalid_argument', have < HEADER ? `chunk batch entry ${count} ends inside its header` : `chunk batch entry ${count} is longer than the body`);
}

/** The whole length (header and body) of the entry `at` starts with; `at` holds at least its header. */
function entryLength(at: Buffer, index: number): number {
  if (index >= MAX_BATCH_ENTRIES) throw new RefugeError('invalid_argument', `a chunk batch holds at most ${MAX_BATCH_ENTRIES} entries`);
  if (at.length < HEADER) throw new RefugeError('invalid_argument', `chunk batch entry ${index} ends inside its header`);
  const flags = at[0] as number;
  if (flags & ~(COMPRESSED | PATCH | ZERO_BASE) || (flags & ZERO_BASE && !(flags & PATCH))) {
    throw new RefugeError('invalid_argument', `chunk batch entry ${index} has unknown flags ${flags}`);
  }
  return HEADER + at.readUInt32BE(69);
}

/** One entry from exactly its bytes (header and body); shorter bytes are an `invalid_argument` error. */
function entryOf(bytes: Buffer, index: number): BatchEntry {
  if (bytes.length < HEADER + bytes.readUInt32BE(69)) throw new RefugeError('invalid_argument', `chunk batch entry ${index} is longer than the body`);
  const flags = bytes[0] as number;
  const entry: BatchEntry = { hash: bytes.toString('hex', 1, 33), body: bytes.subarray(HEADER), compressed: (flags & COMPRESSED) !== 0 };
  if (flags & PATCH) entry.patch = { base: flags & ZERO_BASE ? null : bytes.toString('hex', 33, 65), chunkLength: bytes.readUInt32BE(65) };
  return entry;
}
