import { createHash } from 'node:crypto';
import { RefugeError } from '../core/errors.js';
import { seal, unseal, type DataKey } from './sealing.js';

/**
 * A recovery point's manifest: for each disk of the machine, its size, chunk size and the root of its hash tree
 * (tree.ts), plus counts kept up to date at every commit so nothing needs a tree walk to show them.
 * Plain stores keep it as readable JSON followed by a line `sha256:<hex of the JSON>`; encrypted stores seal that
 * same text (sealing.ts). Either way a damaged manifest is an `integrity` error naming it (docs/store-format.md).
 */
export const CONSISTENCY = ['crash', 'app'] as const;
export type Consistency = (typeof CONSISTENCY)[number];
export const MANIFEST_FORMAT = 2;

export interface DiskManifest {
  name: string;
  sizeBytes: number;
  chunkSize: number;
  /** Root hash of the disk's chunk tree; all zeros for a disk of nothing but zeros. */
  root: string;
  /** Non-zero chunks, and the bytes they cover. */
  storedChunks: number;
  storedBytes: number;
  /**
   * The chunks this point changed on this disk since its parent, and the bytes they cover (the disk's churn).
   * Absent from manifests written before 2026-12-02; the point's `stats` add them up over its disks.
   */
  changedChunks?: number;
  changedBytes?: number;
}

export interface PointManifest {
  format: 2;
  id: string;
  replicationId: string;
  parentId: string | null;
  /** The instant the point represents (when its cut was taken at the source). */
  capturedAt: string;
  /** When the point became visible in the store. */
  committedAt: string;
  consistency: Consistency;
  disks: DiskManifest[];
  stats: { changedChunks: number; changedBytes: number; storedBytes: number };
}

export const pointsPrefix = (replicationId: string): string => `points/${replicationId}/`;
export const pointKey = (replicationId: string, pointId: string): string => `${pointsPrefix(replicationId)}${pointId}.json`;

export function encodeManifest(m: PointManifest, key: DataKey): Buffer {
  return encodeSummedJson(m, key);
}

export function decodeManifest(data: Buffer, object: string, key: DataKey): PointManifest {
  const m = decodeSummedJson<PointManifest>(data, object, key, 'manifest');
  if (m.format !== MANIFEST_FORMAT) {
    throw new RefugeError('failed_precondition', `manifest ${object} has unsupported format ${String(m.format)}`, { details: { object } });
  }
  return m;
}

/**
 * JSON followed by a line `sha256:<hex of the JSON>`, sealed in an encrypted store: how the store keeps its small
 * documents (manifests, staged changes), so that damage or truncation is an `integrity` error naming the object.
 */
export function encodeSummedJson(value: unknown, key: DataKey): Buffer {
  const body = JSON.stringify(value);
  const text = Buffer.from(`${body}\nsha256:${createHash('sha256').update(body).digest('hex')}\n`);
  return key === null ? text : seal(text, key);
}

export function decodeSummedJson<T>(data: Buffer, object: string, key: DataKey, what: string): T {
  const text = (key === null ? data : unseal(data, key, object)).toString('utf8');
  const nl = text.lastIndexOf('\nsha256:');
  const body = nl < 0 ? '' : text.slice(0, nl);
  const sum = nl < 0 ? '' : text.slice(nl + 8).trim();
  if (!body || createHash('sha256').update(body).digest('hex') !== sum) {
    throw new RefugeError('integrity', `${what} ${object} is corrupt (checksum mismatch or truncated)`, {
      hint: 'run `refuge store verify`; other points are unaffected',
      details: { object },
    });
  }
  return JSON.parse(body) as T;
}

export function findDisk(m: PointManifest, diskName: string): DiskManifest {
  const disk = m.disks.find((d) => d.name === diskName);
  if (!disk) {
    throw new RefugeError('not_found', `point ${m.id} has no disk '${diskName}'`, {
      details: { disks: m.disks.map((d) => d.name) },
    });
  }
  return disk;
}
