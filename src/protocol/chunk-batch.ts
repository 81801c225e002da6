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

/** A batch body with its entries (each entry's body a view into it), as `POST /chunks/batch` sends it. */
export interface FramedBatch {
  body: Buffer;
  entries: BatchEntry[];
}

/** The body of an entry as `BatchWriter.append` has it written: its length, and whether it is zstd-compressed. */
export interface WrittenBody {
  length: number;
  compressed: boolean;
}

/**
 * Builds a batch body in a buffer the caller provides (and may reuse): each entry's body is written straight into
 * its place, so framing a batch copies nothing and allocates nothing (the agent's memory, P11). Entries lie one
 * after another, so any run of consecutive entries is itself a batch body (`framed`).
 */
export class BatchWriter {
  readonly entries: BatchEntry[] = [];
  private readonly starts: number[] = [];
  private at = 0;

  constructor(private readonly out: Buffer) {}

  /** Bytes written so far. */
  get length(): number {
    return this.at;
  }

  /**
   * Appends one entry: `write` puts its body at the start of the buffer it gets (room for `maxBody` bytes) and
   * says what it wrote. Throws when the buffer has no room for the header and `maxBody`.
   */
  append(hash: string, patch: BatchEntry['patch'], maxBody: number, write: (dst: Buffer) => WrittenBody): BatchEntry {
    const start = this.at;
    if (start + HEADER + maxBody > this.out.length) throw new RefugeError('internal', `batch buffer of ${this.out.length} bytes has no room for an entry of ${maxBody} bytes at ${start}`);
    const { length, compressed } = write(this.out.subarray(start + HEADER, start + HEADER + maxBody));
    const out = this.out;
    out.fill(0, start, start + HEADER);
    out[start] = (compressed ? COMPRESSED : 0) | (patch ? PATCH : 0) | (patch && patch.base === null ? ZERO_BASE : 0);
    out.write(hash, start + 1, 32, 'hex');
    if (patch?.base) out.write(patch.base, start + 33, 32, 'hex');
    out.writeUInt32BE(patch?.chunkLength ?? 0, start + 65);
    out.writeUInt32BE(length, start + 69);
    this.at = start + HEADER + length;
    const entry: BatchEntry = { hash, body: out.subarray(start + HEADER, this.at), compressed, ...(patch ? { patch } : {}) };
    this.entries.push(entry);
    this.starts.push(start);
    return entry;
  }

  /** Entries `from` up to (not including) `to`, as one batch body: a view of the buffer, not a copy. */
  framed(from = 0, to = this.entries.length): FramedBatch {
    const end = to < this.entries.length ? (this.starts[to] as number) : this.at;
    return { body: this.out.subarray(this.starts[from] ?? end, end), entries: this.entries.slice(from, to) };
  }
}

/** Frames `entries` into a new buffer. */
export function frameBatch(entries: readonly BatchEntry[]): FramedBatch {
  const writer = new BatchWriter(Buffer.allocUnsafe(entries.reduce((n, e) => n + HEADER + e.body.length, 0)));
  for (const e of entries) {
    writer.append(e.hash, e.patch, e.body.length, (dst) => ({ length: e.body.copy(dst), compressed: e.compressed }));
  }
  return writer.framed();
}

export const encodeBatch = (entries: readonly BatchEntry[]): Buffer => frameBatch(entries).body;

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
