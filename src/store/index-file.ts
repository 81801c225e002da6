import { createHash } from 'node:crypto';
import { compress, decompress } from 'zstd-napi';
import { RefugeError } from '../core/errors.js';
import { entryBytes, readEntry, writeEntry, type PackInfo } from './pack.js';
import { seal, unseal, type DataKey } from './sealing.js';

/**
 * Index files (`index/<sha256>`): which blobs each pack holds, so opening a store reads a few index objects instead
 * of every pack. Several index files coexist; their union is the index, and a blob listed twice is one blob in two
 * places (harmless: garbage collection keeps one). Layout, zstd-compressed then sealed:
 *
 *   "RFGIDX2\0" | f64 createdAt | u32 packs | per pack: id (32) | f64 createdAt | u32 size | u32 blobs | entries
 *
 * with entries as in pack headers (pack.ts). The rule garbage collection lives by: a pack is deleted only after
 * every index file listing it is deleted, so a reader whose index files all still exist can trust every pack in them.
 */

const MAGIC = Buffer.from('RFGIDX2\0');
export const INDEX_PREFIX = 'index/';

export function encodeIndexFile(packs: PackInfo[], key: DataKey): { name: string; data: Buffer } {
  const size = MAGIC.length + 12 + packs.reduce((n, p) => n + 48 + p.blobs.reduce((m, e) => m + entryBytes(e), 0), 0);
  const out = Buffer.alloc(size);
  MAGIC.copy(out, 0);
  let at = MAGIC.length;
  out.writeDoubleLE(Date.now(), at);
  out.writeUInt32LE(packs.length, at + 8);
  at += 12;
  for (const p of packs) {
    out.write(p.id, at, 32, 'hex');
    out.writeDoubleLE(p.createdAt, at + 32);
    out.writeUInt32LE(p.size, at + 40);
    out.writeUInt32LE(p.blobs.length, at + 44);
    at += 48;
    for (const e of p.blobs) at = writeEntry(out, at, e);
  }
  const data = seal(compress(out, { compressionLevel: 3 }), key);
  return { name: `${INDEX_PREFIX}${createHash('sha256').update(data).digest('hex')}`, data };
}

export function decodeIndexFile(data: Buffer, name: string, key: DataKey): PackInfo[] {
  const bad = (why: string) => new RefugeError('integrity', `index file ${name} is corrupt: ${why}`, { details: { object: name } });
  const body = unseal(data, key, name);
  let buf: Buffer;
  try {
    buf = decompress(body);
  } catch {
    throw bad('does not decompress');
  }
  if (buf.length < MAGIC.length + 12 || !buf.subarray(0, MAGIC.length).equals(MAGIC)) throw bad('unknown format');
  let at = MAGIC.length + 8;
  const count = buf.readUInt32LE(at);
  at += 4;
  const packs: PackInfo[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const id = buf.toString('hex', at, at + 32);
      const createdAt = buf.readDoubleLE(at + 32);
      const size = buf.readUInt32LE(at + 40);
      const blobCount = buf.readUInt32LE(at + 44);
      at += 48;
      const blobs = [];
      for (let j = 0; j < blobCount; j++) {
        const e = readEntry(buf, at);
        blobs.push(e);
        at += entryBytes(e);
      }
      packs.push({ id, createdAt, size, blobs });
    }
  } catch (err) {
    throw bad((err as Error).message);
  }
  if (at !== buf.length) throw bad('trailing bytes');
  return packs;
}
