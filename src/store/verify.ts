import { isRefugeError } from '../core/errors.js';
import { readBlobs } from './bulk-read.js';
import type { PointManifest } from './manifest.js';
import type { ReplicaStore } from './replica-store.js';
import { collectBlobs } from './tree.js';

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
