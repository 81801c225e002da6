import { createHash } from 'node:crypto';
import { RefugeError } from '../core/errors.js';

/**
 * A recovery point's manifest: for each disk of the machine, its size and the address of every chunk in offset
 * order (`null` for a chunk of zeros, which is never stored). Stored as JSON followed by a line holding the
 * SHA-256 of that JSON, so a flipped byte in a manifest is detected like one in a chunk (docs/store-format.md).
 */
export const CONSISTENCY = ['crash', 'app'] as const;
export type Consistency = (typeof CONSISTENCY)[number];

export interface DiskManifest {
  name: string;
  sizeBytes: number;
  chunkSize: number;
  /** One entry per chunk: its hex SHA-256, or null for an all-zero chunk. */
  chunks: (string | null)[];
}

export interface PointManifest {
  format: 1;
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

export function encodeManifest(m: PointManifest): Buffer {
  const body = JSON.stringify(m);
  const sum = createHash('sha256').update(body).digest('hex');
  return Buffer.from(`${body}\nsha256:${sum}\n`);
}

export function decodeManifest(data: Buffer, key: string): PointManifest {
  const text = data.toString('utf8');
  const nl = text.lastIndexOf('\nsha256:');
  const body = nl < 0 ? '' : text.slice(0, nl);
  const sum = nl < 0 ? '' : text.slice(nl + 8).trim();
  if (!body || createHash('sha256').update(body).digest('hex') !== sum) {
    throw new RefugeError('integrity', `manifest ${key} is corrupt (checksum mismatch or truncated)`, {
      hint: 'run `refuge store verify`; other points are unaffected',
      details: { object: key },
    });
  }
  const m = JSON.parse(body) as PointManifest;
  if (m.format !== 1) {
    throw new RefugeError('failed_precondition', `manifest ${key} has unsupported format ${String(m.format)}`);
  }
  return m;
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
