import { closeSync, openSync, readSync, writevSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { BLOB_DECODED_ELSEWHERE, BLOB_DELTA, BLOB_LEAVES, decodeBlob, encodeBlob, type BlobCheck } from './blob-codec.js';
import { MAX_DELTA_DEPTH, checkDeltaAlone, decodeChain, patchChain } from './delta-frame.js';
import { LEAF_SIZE, applyPatch, isZero, nameWithDigests, type BlobNaming } from './chunks.js';
import { encodedBound, type RebuildBase, type RebuildItem, type RebuildResult, type WorkerReply, type WorkerTask } from './worker-pool.js';

/**
 * The CPU work of the store, run on every core: hashing, zero detection, compression, sealing and their reverse.
 * Results go back as one fresh buffer per task whose memory is transferred, not copied.
 */

/** Where restore tasks decompress chunks on this thread, reused from task to task. */
const SCRATCH_BYTES = 32 * 1024 * 1024;
let scratch = Buffer.alloc(0);

/** A Buffer over the same memory (Buffer.from of a Uint8Array would copy it). */
const view = (a: Uint8Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** Writes buffers one after the other at `position`, however many calls the kernel needs; returns the bytes. */
function writeAll(fd: number, buffers: Buffer[], position: number): number {
  let total = buffers.reduce((n, b) => n + b.length, 0);
  const all = total;
  let at = position;
  let rest = buffers;
  while (total > 0) {
    let n = writevSync(fd, rest, at);
    at += n;
    total -= n;
    // Drop what was written (a short write can end inside a buffer).
    const left: Buffer[] = [];
    for (const b of rest) {
      if (n >= b.length) n -= b.length;
      else {
        left.push(b.subarray(n));
        n = 0;
      }
    }
    rest = left;
  }
  return all;
}

/**
 * `length` bytes of a file at `offset`, read into `into` (at least that long) here, so the main thread neither reads
 * them nor passes them over; a reason string when the file is gone or shorter (a pack rewritten since: the caller
 * reads the blob another way).
 */
function readRange(file: string, offset: number, length: number, into: Buffer): Buffer | string {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    return `cannot open ${file}: ${(err as Error).message}`;
  }
  try {
    const out = into.subarray(0, length);
    let done = 0;
    while (done < length) {
      const n = readSync(fd, out, done, length - done, offset + done);
      if (n === 0) return `${file} ends at ${offset + done}, before ${offset + length}`;
      done += n;
    }
    return out;
  } catch (err) {
    return `cannot read ${file}: ${(err as Error).message}`;
  } finally {
    closeSync(fd);
  }
}

/** Where rebuild tasks read a base's stored bytes and decode its raw bytes, reused from chunk to chunk. */
let readScratch: Buffer = Buffer.alloc(0);
let rawScratch: Buffer = Buffer.alloc(0);
const room = (buf: Buffer, n: number): Buffer => (buf.length >= n ? buf : Buffer.allocUnsafeSlow(Math.max(n, 1024 * 1024)));

/** The stored bytes of a patch's base (in this thread's scratch memory when read from its pack here), or why not. */
function storedBase(base: RebuildBase): Buffer | Extract<RebuildResult, { problem: string }> {
  if ('data' in base) return view(base.data);
  readScratch = room(readScratch, base.length);
  const read = readRange(base.file, base.offset, base.length, readScratch);
  return typeof read === 'string' ? { problem: 'unread', message: read } : read;
}

/** Where a delta base's own bases are read, one reused buffer per place in the chain. */
const chainScratch: Buffer[] = [];

/** The stored bytes of a delta base's own bases (its `chain`), newest first, or why not. */
function chainOf(base: RebuildBase): Buffer[] | Extract<RebuildResult, { problem: string }> {
  const members: Buffer[] = [];
  for (const [k, m] of (base.chain ?? []).entries()) {
    chainScratch[k] = room(chainScratch[k] ?? Buffer.alloc(0), m.length);
    const read = readRange(m.file, m.offset, m.length, chainScratch[k]);
    if (typeof read === 'string') return { problem: 'unread', message: read };
    members.push(read);
  }
  return members;
}

/** A base's raw bytes decoded without a check (into rawScratch when they are not a view of `stored`), or why not. */
function decodeBase(base: RebuildBase, stored: Buffer, key: Buffer | null, check: BlobCheck | null): Buffer | Extract<RebuildResult, { problem: string }> {
  if (!(base.flags & BLOB_DELTA)) {
    const out = decodeBlob(stored, base.flags, base.rawLength, check, key, check ? undefined : rawScratch);
    return typeof out === 'string' ? { problem: 'base', message: out } : out;
  }
  const chain = chainOf(base);
  if (!Array.isArray(chain)) return chain;
  const out = decodeChain([stored, ...chain], base.rawLength, check?.hash ?? null, check ? undefined : rawScratch);
  return typeof out === 'string' ? { problem: 'base', message: out } : out;
}

/** One patch applied to its base (in this thread's scratch memory: the result is valid until the next call). */
function rebuildOne(it: RebuildItem, patch: Buffer, key: Buffer | null, naming: BlobNaming): Extract<RebuildResult, { problem: string }> | { rebuilt: Buffer; hash: string; digests?: Buffer } {
  let base: Buffer | null = null;
  let stored: Buffer | undefined;
  if (it.base) {
    const got = storedBase(it.base);
    if ('problem' in got) return got;
    stored = got;
    rawScratch = room(rawScratch, it.base.rawLength);
    const out = decodeBase(it.base, stored, key, null);
    if ('problem' in out) return out;
    // Stored as it is (not compressed, not sealed): patch a copy, so the stored bytes can still be checked below.
    base = out.buffer === rawScratch.buffer ? out : rawScratch.subarray(0, out.copy(rawScratch));
  } else {
    rawScratch = room(rawScratch, it.chunkLength);
    base = rawScratch.subarray(0, it.chunkLength).fill(0);
  }
  let rebuilt: Buffer;
  try {
    // The base's bytes are this thread's (scratch, or a buffer moved or copied here): patch them in place.
    rebuilt = applyPatch(base, patch, it.chunkLength, true);
  } catch (err) {
    return { problem: 'patch', message: (err as Error).message };
  }
  // A wrong result (zeros, or bytes that do not hash to the claimed name) may come from a damaged base: check the
  // base against its name then, so the sender is told to send the chunk whole rather than refused for ever.
  const damagedBase = (): Extract<RebuildResult, { problem: string }> | undefined => {
    if (!it.base || !stored) return undefined;
    const again = decodeBase(it.base, stored, key, { hash: it.base.hash, naming }); // rare: a buffer of its own
    return 'problem' in again ? again : undefined;
  };
  if (isZero(rebuilt)) return damagedBase() ?? { problem: 'zero', message: 'the patch rebuilds a chunk of zeros' };
  const { hash, digests } = nameWithDigests(rebuilt, naming);
  if (hash !== it.claimedHash) return damagedBase() ?? { problem: 'mismatch', message: 'hash mismatch', hash };
  return { rebuilt, hash, ...(digests ? { digests } : {}) };
}

/**
 * Chains of deltas are cut short at a depth drawn per patch between MAX_DELTA_DEPTH - 3 and MAX_DELTA_DEPTH (from the
 * new chunk's name): a disk whose every chunk is patched every point would otherwise reach the limit with all of them
 * in the same point, and that point would write every chunk whole (P5: one point in nine shipped ~2x slower).
 */
const depthLimit = (hash: string): number => MAX_DELTA_DEPTH - (Number.parseInt(hash.slice(0, 2), 16) % 4);

/**
 * A patch on a leaf-framed or delta base rebuilt leaf by leaf (delta-frame.ts patchChain) into `out` at `at`: stored
 * as a delta on its base when the store keeps deltas (format 4) and the chain may grow, otherwise framed whole, the
 * untouched leaves' stored bytes copied from the blobs holding them. Undefined when this path does not apply (a base
 * neither framed nor a delta: format 2, or one decoded elsewhere) or cannot vouch for the result: rebuildOne then
 * decodes the base whole and checks it.
 */
function rebuildByLeaves(it: RebuildItem, patch: Buffer, level: number, deltas: boolean, out: Buffer, at: number): RebuildResult | undefined {
  if (!it.base || !(it.base.flags & (BLOB_LEAVES | BLOB_DELTA)) || it.base.rawLength !== it.chunkLength) return undefined;
  const stored = storedBase(it.base);
  if ('problem' in stored) return stored;
  const chain = chainOf(it.base);
  if (!Array.isArray(chain)) return chain;
  const whole = !deltas || chain.length + 1 > depthLimit(it.claimedHash);
  rawScratch = room(rawScratch, it.chunkLength);
  const r = patchChain([stored, ...chain], it.base.hash, it.chunkLength, patch, it.claimedHash, level, out, at, rawScratch, whole);
  if ('slow' in r) return undefined;
  if ('problem' in r) return r;
  if (whole) return { hash: r.hash, flags: BLOB_LEAVES, rawLength: it.chunkLength, storedLength: r.stored };
  return { hash: r.hash, flags: BLOB_DELTA, rawLength: it.chunkLength, storedLength: r.stored, base: it.base.hash };
}

function pack(parts: Buffer[]): { buffer: ArrayBuffer; offsets: number[] } {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = Buffer.allocUnsafeSlow(total); // Node's memory moves to another thread cheaply (worker-pool.ts ownCopy)
  const offsets: number[] = [];
  let at = 0;
  for (const p of parts) {
    offsets.push(at);
    out.set(p, at);
    at += p.length;
  }
  return { buffer: out.buffer, offsets };
}

function run(task: WorkerTask): { reply: WorkerReply; transfer: ArrayBuffer[] } {
  const key = task.key === null ? null : view(task.key);
  switch (task.op) {
    case 'encode': {
      // Chunks received from an agent: check each against the hash it was sent under before storing it.
      const data = view(task.data);
      const parts: Buffer[] = [];
      const items = task.items.map((it) => {
        const raw = data.subarray(it.offset, it.offset + it.length);
        const { hash, digests } = nameWithDigests(raw, task.naming);
        if (it.claimedHash !== undefined && hash !== it.claimedHash) return { hash, problem: 'hash mismatch' };
        const enc = encodeBlob(raw, task.level, key, task.naming, digests);
        parts.push(enc.stored);
        return { hash, flags: enc.flags, rawLength: enc.rawLength, storedLength: enc.stored.length };
      });
      const { buffer } = pack(parts);
      return { reply: { op: 'encode', items, stored: buffer }, transfer: [buffer] };
    }
    case 'scan': {
      // A run of an image's chunks: hash all, zero ones are null; encode the ones that differ from `previous`.
      // The input buffer goes back with the reply, and the encoded bytes go into `out` when they fit, so the caller
      // reuses both instead of allocating (and collecting) megabytes per batch.
      const data = view(task.data);
      const previous = view(task.previous);
      const count = Math.ceil(data.length / task.chunkSize);
      const hashes = Buffer.alloc(count * 32);
      const parts: Buffer[] = [];
      const encoded: { index: number; flags: number; rawLength: number; storedLength: number }[] = [];
      for (let i = 0; i < count; i++) {
        const raw = data.subarray(i * task.chunkSize, Math.min(data.length, (i + 1) * task.chunkSize));
        if (isZero(raw)) continue; // stays 32 zero bytes: "no chunk"
        const { hash, digests } = nameWithDigests(raw, task.naming);
        hashes.write(hash, i * 32, 32, 'hex');
        if (hashes.compare(previous, i * 32, i * 32 + 32, i * 32, i * 32 + 32) === 0) continue;
        const enc = encodeBlob(raw, task.level, key, task.naming, digests);
        parts.push(enc.stored);
        encoded.push({ index: i, flags: enc.flags, rawLength: enc.rawLength, storedLength: enc.stored.length });
      }
      const total = parts.reduce((n, p) => n + p.length, 0);
      let stored: ArrayBuffer | SharedArrayBuffer;
      if (task.out && task.out.byteLength >= total) {
        const out = Buffer.from(task.out);
        let at = 0;
        for (const p of parts) at += p.copy(out, at);
        stored = task.out;
      } else {
        stored = pack(parts).buffer;
      }
      const hashBuffer = hashes.buffer.slice(hashes.byteOffset, hashes.byteOffset + hashes.length);
      const input = task.data.buffer as ArrayBuffer;
      // Shared buffers (the caller's reused ones) cannot be transferred, and need not be.
      const movable = [stored, hashBuffer, input].filter((b): b is ArrayBuffer => b instanceof ArrayBuffer);
      return { reply: { op: 'scan', hashes: hashBuffer, encoded, stored, input }, transfer: movable };
    }
    case 'hash': {
      // Only the chunk hashes of a run of chunks (zero chunks stay 32 zero bytes): an agent comparing its disks with
      // a base, on every core. The input buffer goes back for reuse.
      // Leaf-digest names (store format 3) come with the digests themselves, 32 bytes per leaf of each chunk at
      // (chunk * leaves per chunk + leaf) * 32, zeros for a zero chunk: the agent keeps them (agent/leaf-digests.ts).
      const data = view(task.data);
      const count = Math.ceil(data.length / task.chunkSize);
      const hashes = Buffer.alloc(count * 32);
      const perChunk = Math.ceil(task.chunkSize / LEAF_SIZE);
      const digests = task.naming === 'leaf16' ? Buffer.alloc(count * perChunk * 32) : undefined;
      for (let i = 0; i < count; i++) {
        const raw = data.subarray(i * task.chunkSize, Math.min(data.length, (i + 1) * task.chunkSize));
        if (isZero(raw)) continue;
        const own = digests?.subarray(i * perChunk * 32, (i * perChunk + Math.ceil(raw.length / LEAF_SIZE)) * 32);
        hashes.write(nameWithDigests(raw, task.naming, own).hash, i * 32, 32, 'hex');
      }
      const hashBuffer = hashes.buffer.slice(hashes.byteOffset, hashes.byteOffset + hashes.length);
      const digestBuffer = digests?.buffer.slice(digests.byteOffset, digests.byteOffset + digests.length);
      const input = task.data.buffer as ArrayBuffer;
      return { reply: { op: 'hash', hashes: hashBuffer, input, ...(digestBuffer ? { digests: digestBuffer } : {}) }, transfer: [hashBuffer, input, ...(digestBuffer ? [digestBuffer] : [])] };
    }
    case 'restore': {
      // Decode, check and write straight into the image being restored: no decoded bytes travel back to the
      // main thread, so its garbage collector and event loop stay out of the data path. Chunks that follow each
      // other on the disk go out in one writev: fewer system calls, and fewer turns at the file's lock, which the
      // other worker is taking too. Compressed chunks are decompressed into this thread's reused scratch buffer;
      // when it is full, what is decoded so far is written and the buffer starts over. At the first damaged chunk
      // the task stops (the restore fails, naming it).
      const data = view(task.data);
      let writes: { position: number; bytes: Buffer }[] = [];
      let used = 0;
      let written = 0;
      const flush = () => {
        writes.sort((a, b) => a.position - b.position);
        for (let i = 0; i < writes.length; ) {
          let j = i + 1;
          let end = (writes[i] as { position: number; bytes: Buffer }).position + (writes[i] as { bytes: Buffer }).bytes.length;
          while (j < writes.length && j - i < 512 && (writes[j] as { position: number }).position === end) end += (writes[j++] as { bytes: Buffer }).bytes.length;
          written += writeAll(task.fd, writes.slice(i, j).map((w) => w.bytes), (writes[i] as { position: number }).position);
          i = j;
        }
        writes = [];
        used = 0;
      };
      const items: { problem?: string }[] = [];
      for (const it of task.items) {
        if (it.flags & BLOB_DECODED_ELSEWHERE && used + it.rawLength > scratch.length) {
          flush();
          if (scratch.length < it.rawLength) scratch = Buffer.allocUnsafeSlow(Math.max(SCRATCH_BYTES, it.rawLength));
        }
        const stored = data.subarray(it.offset, it.offset + it.length);
        const out = it.chain
          ? decodeChain([stored, ...it.chain.map((m) => data.subarray(m.offset, m.offset + m.length))], it.rawLength, it.hash, scratch.subarray(used))
          : decodeBlob(stored, it.flags, it.rawLength, { hash: it.hash, naming: task.naming }, key, scratch.subarray(used));
        if (typeof out === 'string') {
          items.push({ problem: out });
          return { reply: { op: 'restore', items, written }, transfer: [] };
        }
        if (out.buffer === scratch.buffer) used += out.length;
        for (const position of it.positions) writes.push({ position, bytes: out });
        items.push({});
      }
      flush();
      return { reply: { op: 'restore', items, written }, transfer: [] };
    }
    case 'rebuild': {
      // Patched uploads: read and decode each base, apply the patch, then check and encode the result as 'encode'
      // does, into the caller's `out`; `out` and the input go back with the reply, moved, for the caller to reuse
      // (no memory allocated, copied or collected per chunk). The base's hash is checked only when the rebuilt
      // chunk is wrong: a damaged base cannot rebuild the claimed bytes (unless the patch overwrites the damage, and
      // then the chunk is right), so one SHA-256 per chunk is saved.
      const data = view(task.data);
      const bound = task.items.reduce((n, it) => n + encodedBound(it.chunkLength), 0);
      const out = task.out.byteLength >= bound ? Buffer.from(task.out) : Buffer.allocUnsafeSlow(bound);
      let at = 0;
      const items = task.items.map((it): RebuildResult => {
        const patch = data.subarray(it.offset, it.offset + it.length);
        const framed = key === null ? rebuildByLeaves(it, patch, task.level, task.deltas === true, out, at) : undefined;
        if (framed) {
          if (!('problem' in framed)) at += framed.storedLength;
          return framed;
        }
        const r = rebuildOne(it, patch, key, task.naming);
        if ('problem' in r) return r;
        const enc = encodeBlob(r.rebuilt, task.level, key, task.naming, r.digests);
        out.set(enc.stored, at);
        at += enc.stored.length;
        return { hash: r.hash, flags: enc.flags, rawLength: enc.rawLength, storedLength: enc.stored.length };
      });
      // Moved buffers go back to their owner; shared ones never left it (posting them back would cost the caller a
      // new object each time, see patched-chunks.ts).
      const stored = out.buffer instanceof ArrayBuffer ? out.buffer : undefined;
      const input = task.data.buffer instanceof ArrayBuffer ? task.data.buffer : undefined;
      const moved = [stored, input].filter((b): b is ArrayBuffer => b !== undefined);
      return { reply: { op: 'rebuild', items, ...(stored ? { stored } : {}), ...(input ? { input } : {}) }, transfer: moved };
    }
    case 'decode': {
      const data = view(task.data);
      const parts: Buffer[] = [];
      const items = task.items.map((it) => {
        if (it.flags & BLOB_DELTA) {
          // Checked alone, giving no bytes: readers of bytes read deltas through their chains (bulk-read.ts).
          const problem = checkDeltaAlone(data.subarray(it.offset, it.offset + it.length), it.rawLength, it.hash);
          return problem ? { problem } : { rawLength: 0 };
        }
        const out = decodeBlob(data.subarray(it.offset, it.offset + it.length), it.flags, it.rawLength, { hash: it.hash, naming: task.naming, strict: task.strict === true }, key);
        if (typeof out === 'string') return { problem: out };
        parts.push(out);
        return { rawLength: out.length };
      });
      const { buffer } = pack(parts);
      return { reply: { op: 'decode', items, raw: buffer }, transfer: [buffer] };
    }
  }
}

parentPort?.on('message', (msg: { id: number; task: WorkerTask }) => {
  try {
    const { reply, transfer } = run(msg.task);
    parentPort?.postMessage({ id: msg.id, reply }, transfer);
  } catch (err) {
    parentPort?.postMessage({ id: msg.id, error: (err as Error).stack ?? String(err) });
  }
});
