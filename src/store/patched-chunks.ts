import { RefugeError, isRefugeError } from '../core/errors.js';
import type { BlobStore } from './blob-store.js';
import { isChunkHash, type BlobNaming } from './chunks.js';
import type { DataKey } from './sealing.js';
import { MAX_CHUNK_SIZE } from './store-config.js';
import { encodedBound, workerPool, type ChainMember, type RebuildBase, type RebuildItem, type RebuildResult } from './worker-pool.js';

/**
 * Patched uploads rebuilt in groups (ReplicaStore.putPatchedChunks). A cdp point of scattered small writes arrives
 * as hundreds or thousands of patches, one per dirty chunk; rebuilt one task at a time, each cost the store's main
 * thread (which serves every agent) a round trip to a worker, a copy of the patch posted over and a fresh buffer
 * of the rebuilt chunk posted back, and the garbage collection all that memory caused: 2-3 ms of vault time per
 * patch, whatever the chunk size. Now a group goes to a worker as one task: the patches are copied into one reused
 * shared buffer, the worker reads each base from its pack file itself and encodes the rebuilt chunks into a second
 * reused shared buffer, and the main thread copies them from there into the pack being built.
 */

export interface PatchUpload {
  hash: string;
  /** The stored chunk the patch applies to; null: a chunk of zeros. */
  base: string | null;
  patch: Uint8Array;
  chunkLength: number;
}

/** A patch's fate: its chunk stored (or already there), `rawLength` bytes long; or why not. */
export type PatchOutcome = { rawLength: number } | { error: RefugeError };

export interface PatchTarget {
  blobs: BlobStore;
  key: DataKey;
  naming: BlobNaming;
  level: number;
  /** Whether patched chunks may be stored as deltas on their bases (a plain store of format 4). */
  deltas?: boolean;
  /** Called for each chunk stored, before it is added (the store's protection of uploads awaiting a commit). */
  noteUpload(hash: string): void;
}

/**
 * A patch refused for its base (lacking, unreadable, damaged): the sender sends the chunk whole instead. Marked with
 * `details.patchBase` (which survives the HTTP answer) so that no other failed precondition is taken for one.
 */
export const baseLacking = (base: string) => new RefugeError('failed_precondition', `patch base chunk ${base} is not stored`, { hint: 'upload the whole chunk instead', details: { patchBase: base } });
/** Whether `err` refuses a patch for its base (see baseLacking). */
export const isPatchBaseRefusal = (err: unknown): boolean => isRefugeError(err, 'failed_precondition') && err.details.patchBase !== undefined;
export const mismatch = (claimed: string, actual: string) => new RefugeError('integrity', `chunk bytes hash to ${actual}, not to the claimed ${claimed}; rejected`);

/**
 * Buffers of one size, shared with the worker of each task (SharedArrayBuffer) and reused: allocating and
 * collecting megabytes per task was the cost this file removes. They were first moved to the worker and back
 * (transferred ArrayBuffers), but every buffer arriving back is a new object in the main thread's young generation,
 * and with more than ~32 MB of such buffers young, V8 runs a scavenge at each new buffer the thread allocates (a
 * TLS read, a request body): ~2,000 scavenges, 12 s of the vault's main thread in a 90 s P5 run ("external memory
 * pressure", --trace-gc). Shared, a slab never changes hands: the reply carries the outcomes only. Copies into and
 * out of shared memory ran at 14 GB/s here against 28 for plain memory, small beside the rest. A slab goes back to
 * the pool only once the reply has come (the worker is done with it), so no task writes into memory another uses.
 * Eight are kept: two per group in flight (replicator.ts), so no task starts on fresh pages. A larger request gets
 * a buffer of its own, not kept.
 */
const SLAB_BYTES = 4 * 1024 * 1024 + 64 * 1024;
const KEPT_SLABS = 8;
const slabs: SharedArrayBuffer[] = [];
const takeSlab = (bytes: number): SharedArrayBuffer => (bytes <= SLAB_BYTES ? (slabs.pop() ?? new SharedArrayBuffer(SLAB_BYTES)) : new SharedArrayBuffer(bytes));
const giveBack = (slab: SharedArrayBuffer): void => {
  if (slab.byteLength === SLAB_BYTES && slabs.length < KEPT_SLABS) slabs.push(slab);
};

/** What a group of patches may hold: the rebuilt chunks of a task fit one slab. */
export const PATCH_GROUP_CHUNK_BYTES = 4 * 1024 * 1024;

/** What a worker's result for upload `u` means to the caller. */
function outcomeOf(u: PatchUpload, r: RebuildResult | undefined): PatchOutcome {
  if (!r) return { error: new RefugeError('internal', `rebuilding chunk ${u.hash} gave no result`) };
  return 'problem' in r ? { error: refused(u.hash, u.base, r) } : { rawLength: r.rawLength };
}

function refused(hash: string, base: string | null, r: Extract<RebuildResult, { problem: string }>): RefugeError {
  if (r.problem === 'base') return new RefugeError('failed_precondition', `patch base chunk ${base ?? 'zero'} cannot be read: it is damaged (${r.message})`, { hint: 'upload the whole chunk instead', details: { patchBase: base ?? 'zero' } });
  if (r.problem === 'mismatch') return mismatch(hash, r.hash ?? '?');
  return new RefugeError('invalid_argument', r.problem === 'zero' ? `chunk ${hash}: ${r.message}; zero chunks are not stored` : r.message);
}

/** The reason a patch upload is refused before any work, or undefined. */
function invalid(u: PatchUpload, blobs: BlobStore): RefugeError | undefined {
  if (!isChunkHash(u.hash)) return new RefugeError('invalid_argument', `'${u.hash}' is not a chunk hash`);
  if (!Number.isInteger(u.chunkLength) || u.chunkLength < 1 || u.chunkLength > MAX_CHUNK_SIZE) {
    return new RefugeError('invalid_argument', `patch chunk length ${u.chunkLength} is outside 1..${MAX_CHUNK_SIZE}`);
  }
  if (u.base !== null && (!isChunkHash(u.base) || !blobs.has(u.base))) return baseLacking(u.base);
  return undefined;
}

/**
 * Rebuilds and stores a group of patches (see the file comment); one outcome per upload, in order. Bases in local
 * pack files are read by the worker; a base still in the pack being built, in another backend, or moved since
 * (the worker answers `unread`) is read here by `readBase` and its patch rebuilt in a task of its own.
 */
export async function rebuildPatches(t: PatchTarget, uploads: readonly PatchUpload[], readBase: (hash: string) => Promise<RebuildBase>): Promise<PatchOutcome[]> {
  const outcomes: (PatchOutcome | undefined)[] = uploads.map((u) => {
    const bad = invalid(u, t.blobs);
    return bad ? { error: bad } : undefined;
  });
  const local: { n: number; base: RebuildBase | null }[] = [];
  const elsewhere: number[] = [];
  for (const [n, u] of uploads.entries()) {
    if (outcomes[n]) continue;
    const loc = u.base === null ? undefined : t.blobs.localLocation(u.base);
    const chain = loc ? localChain(t.blobs, u.base as string) : undefined;
    if (u.base === null || (loc && chain)) local.push({ n, base: loc && chain ? { file: loc.file, offset: loc.offset, length: loc.length, flags: loc.flags, rawLength: loc.rawLength, hash: u.base as string, ...(chain.length > 0 ? { chain } : {}) } : null });
    else elsewhere.push(n);
  }
  const results = await runGroup(t, uploads, local);
  for (const [i, { n }] of local.entries()) {
    const r = results[i];
    if (r && 'problem' in r && r.problem === 'unread') elsewhere.push(n);
    else outcomes[n] = outcomeOf(uploads[n] as PatchUpload, r);
  }
  for (const n of elsewhere) {
    const u = uploads[n] as PatchUpload;
    try {
      const [r] = await runGroup(t, uploads, [{ n, base: await readBase(u.base as string) }]);
      outcomes[n] = outcomeOf(u, r);
    } catch (err) {
      outcomes[n] = { error: RefugeError.wrap(err, `rebuilding chunk ${u.hash}`) };
    }
  }
  return outcomes as PatchOutcome[];
}

/**
 * Where a delta base's own bases lie in local pack files, newest first (none for a blob that is not a delta); undefined
 * when one is not in a local file (pending, or another backend): that base is read by `readBase`.
 */
function localChain(blobs: BlobStore, base: string): ChainMember[] | undefined {
  const chain: ChainMember[] = [];
  for (const name of blobs.chainOf(base).slice(1)) {
    const member = blobs.localLocation(name);
    if (!member) return undefined;
    chain.push({ file: member.file, offset: member.offset, length: member.length });
  }
  return chain;
}

/** One worker task for `items` (indexes into `uploads`); the rebuilt chunks are added to the open pack here. */
async function runGroup(t: PatchTarget, uploads: readonly PatchUpload[], items: { n: number; base: RebuildBase | null }[]): Promise<RebuildResult[]> {
  if (items.length === 0) return [];
  const input = takeSlab(items.reduce((s, { n }) => s + (uploads[n] as PatchUpload).patch.length, 0));
  const out = takeSlab(items.reduce((s, { n }) => s + encodedBound((uploads[n] as PatchUpload).chunkLength), 0));
  try {
    const data = Buffer.from(input);
    let at = 0;
    const tasks: RebuildItem[] = items.map(({ n, base }) => {
      const u = uploads[n] as PatchUpload;
      data.set(u.patch, at);
      at += u.patch.length;
      return { offset: at - u.patch.length, length: u.patch.length, chunkLength: u.chunkLength, claimedHash: u.hash, base };
    });
    const reply = await workerPool().run({ op: 'rebuild', key: t.key, naming: t.naming, level: t.level, data, items: tasks, out, deltas: t.deltas === true }, true);
    const stored = Buffer.from(reply.stored ?? out);
    let from = 0;
    for (const r of reply.items) {
      if ('problem' in r) continue;
      if (!t.blobs.has(r.hash)) {
        t.noteUpload(r.hash);
        // addNow copies the bytes into the open pack: `out` is free for the next task once this loop ends.
        t.blobs.addNow('data', r.hash, { stored: stored.subarray(from, from + r.storedLength), flags: r.flags, rawLength: r.rawLength, ...(r.base ? { base: r.base } : {}) });
      }
      from += r.storedLength;
    }
    return reply.items;
  } finally {
    giveBack(input);
    giveBack(out);
  }
}
