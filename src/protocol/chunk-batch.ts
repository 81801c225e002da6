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
  let at = 0;
  while (at < body.length) {
    if (entries.length >= MAX_BATCH_ENTRIES) throw new RefugeError('invalid_argument', `a chunk batch holds at most ${MAX_BATCH_ENTRIES} entries`);
    if (at + HEADER > body.length) throw new RefugeError('invalid_argument', `chunk batch entry ${entries.length} ends inside its header`);
    const flags = body[at] as number;
    if (flags & ~(COMPRESSED | PATCH | ZERO_BASE) || (flags & ZERO_BASE && !(flags & PATCH))) {
      throw new RefugeError('invalid_argument', `chunk batch entry ${entries.length} has unknown flags ${flags}`);
    }
    const length = body.readUInt32BE(at + 69);
    if (at + HEADER + length > body.length) throw new RefugeError('invalid_argument', `chunk batch entry ${entries.length} is longer than the body`);
    const hash = body.toString('hex', at + 1, at + 33);
    const entry: BatchEntry = { hash, body: body.subarray(at + HEADER, at + HEADER + length), compressed: (flags & COMPRESSED) !== 0 };
    if (flags & PATCH) entry.patch = { base: flags & ZERO_BASE ? null : body.toString('hex', at + 33, at + 65), chunkLength: body.readUInt32BE(at + 65) };
    entries.push(entry);
    at += HEADER + length;
  }
  return entries;
}
