import { isRefugeError } from '../core/errors.js';
import { corruptBlob } from './blob-store.js';
import { readBlobs } from './bulk-read.js';
import { INDEX_PREFIX, decodeIndexFile } from './index-file.js';
import { decodeManifest, type PointManifest } from './manifest.js';
import { packIdMatches, packIdOfKey, parsePack, type BlobEntry } from './pack.js';
import type { ReplicaStore } from './replica-store.js';
import { collectBlobs } from './tree.js';
import { workerPool } from './worker-pool.js';

export interface Problem {
  /** The damaged or missing object (a pack, an index file, a manifest). */
  object: string;
  problem: string;
}

/**
 * Reads and hash-checks every blob one point references: its tree nodes while walking, then every chunk by pack
 * range. A problem names the object holding the damage; walking goes on past damaged nodes where it can.
 */
export async function verifyPointBlobs(store: ReplicaStore, point: PointManifest): Promise<Problem[]> {
  const problems: Problem[] = [];
  const chunks = new Set<string>();
  const seen = new Set<string>();
  for (const disk of point.disks) {
    try {
      await collectBlobs(disk.root, store.blobs, seen, () => undefined, (h) => void chunks.add(h));
    } catch (err) {
      if (!isRefugeError(err, 'integrity')) throw err;
      const object = typeof err.details.object === 'string' ? err.details.object : `tree of disk ${disk.name}`;
      problems.push({ object, problem: `${err.message} (point ${point.id}, disk ${disk.name}): part of the disk cannot be read` });
    }
  }
  await readBlobs(store.blobs, chunks, (_hash, raw) => {
    if (!Buffer.isBuffer(raw)) problems.push({ object: raw.object, problem: `${raw.problem} (point ${point.id})` });
  });
  return problems;
}

export interface StoreVerifyResult {
  points: number;
  packs: number;
  packsChecked: number;
  blobsChecked: number;
  problems: (Problem & { points?: string[] })[];
}

/**
 * Checks a whole store: every index file and manifest decodes, every point's trees are complete and every blob they
 * reference is indexed, and every pack (or a random `sample` fraction of them) hashes to its name and holds blobs
 * that decode to their hashes. Problems name the damaged object and the points that lose data through it.
 */
export async function verifyStore(
  store: ReplicaStore,
  options: { sample?: number; onProgress?: (done: number, total: number) => void } = {},
): Promise<StoreVerifyResult> {
  const problems: StoreVerifyResult['problems'] = [];
  const indexed = new Map<string, BlobEntry[]>(); // pack id -> blobs the index lists in it
  for (const name of await store.backend.list(INDEX_PREFIX)) {
    try {
      for (const p of decodeIndexFile(await store.backend.get(name), name, store.key)) {
        if (!indexed.has(p.id)) indexed.set(p.id, p.blobs);
      }
    } catch (err) {
      if (!isRefugeError(err, 'integrity')) throw err;
      problems.push({ object: name, problem: err.message });
    }
  }
  await store.blobs.refresh();

  // Points: manifests, trees, and that every referenced blob is indexed.
  const pointBlobs = new Map<string, Set<string>>();
  const pointKeys = (await store.backend.list('points/')).filter((k) => k.endsWith('.json'));
  for (const key of pointKeys) {
    const blobs = new Set<string>();
    pointBlobs.set(key, blobs);
    try {
      const m = decodeManifest(await store.backend.get(key), key, store.key);
      for (const d of m.disks) await collectBlobs(d.root, store.blobs, new Set(), (h) => blobs.add(h), (h) => blobs.add(h));
      for (const h of blobs) if (!store.blobs.has(h)) problems.push({ object: `blob ${h}`, problem: `blob ${h} is referenced by ${key} but no index lists it`, points: [key] });
      // A delta's chain is the point's too: damage to a base loses the point's data as much as damage to the delta.
      for (const h of [...blobs]) {
        for (const base of store.blobs.chainOf(h).slice(1)) {
          if (blobs.has(base)) break;
          blobs.add(base);
          if (!store.blobs.location(base)) problems.push({ object: `blob ${base}`, problem: `blob ${base}, the base a delta of ${key} is read through, is not in any index`, points: [key] });
        }
      }
    } catch (err) {
      if (!isRefugeError(err, 'integrity') && !isRefugeError(err, 'failed_precondition')) throw err;
      problems.push({ object: typeof err.details.object === 'string' ? err.details.object : key, problem: err.message, points: [key] });
    }
  }

  // Packs: whole-pack hash, header, and every blob.
  const packKeys = await store.backend.list('packs/');
  const sample = options.sample ?? 1;
  const chosen = sample >= 1 ? packKeys : packKeys.filter(() => Math.random() < sample);
  const damagedBlobs = new Map<string, string>(); // blob -> pack object
  let blobsChecked = 0;
  for (const [n, key] of chosen.entries()) {
    const id = packIdOfKey(key);
    const damage = (problem: string, blobs: string[]) => {
      problems.push({ object: key, problem });
      for (const b of blobs) damagedBlobs.set(b, key);
    };
    const indexedHere = indexed.get(id) ?? [];
    let data: Buffer;
    try {
      data = await store.backend.get(key);
    } catch (err) {
      if (!isRefugeError(err, 'not_found')) throw err;
      continue; // deleted by a garbage collection since the listing
    }
    // Every byte of a pack is in a blob (checked by its hash), the sealed header (its seal, and its hash is the
    // pack's name) or the tail.
    if (!packIdMatches(data, id)) damage(`pack ${key} has a header that does not hash to its name (damaged, or a pack under another name)`, []);
    let blobs: BlobEntry[] = indexedHere;
    try {
      blobs = parsePack(data, id, store.key).blobs;
      const listed = new Set(blobs.map((b) => b.hash));
      for (const b of indexedHere) if (!listed.has(b.hash)) damage(`pack ${key} does not hold blob ${b.hash} the index lists in it`, [b.hash]);
    } catch (err) {
      if (!isRefugeError(err, 'integrity')) throw err;
      damage(err.message, []);
    }
    const size = data.length; // the buffer moves to the worker
    const reply = await workerPool().run({ op: 'decode', key: store.key, naming: store.naming, data, items: blobs.map((b) => ({ offset: b.offset, length: b.length, flags: b.flags, rawLength: b.rawLength, hash: b.hash })), strict: true }, true);
    for (const [i, item] of reply.items.entries()) {
      const b = blobs[i] as BlobEntry;
      blobsChecked++;
      if ('problem' in item || b.offset + b.length > size) damage(corruptBlob(id, b.hash, 'problem' in item ? item.problem : 'pack is truncated').message, [b.hash]);
    }
    options.onProgress?.(n + 1, chosen.length);
  }
  // Name the points that lose data through each damaged blob.
  for (const p of problems) {
    if (p.points || !p.object.startsWith('packs/')) continue;
    const hit = [...pointBlobs].filter(([, blobs]) => [...damagedBlobs].some(([b, pack]) => pack === p.object && blobs.has(b))).map(([k]) => k);
    if (hit.length > 0) p.points = hit;
  }
  return { points: pointKeys.length, packs: packKeys.length, packsChecked: chosen.length, blobsChecked, problems };
}
