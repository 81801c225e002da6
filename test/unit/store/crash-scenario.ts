import { CHUNK, seededBytes } from './fixtures.js';

/**
 * The store history the crash tests start from, shared by crash.test.ts and crash-child.ts: point k of
 * replication CRASH_REP holds crashDisk(k) and was captured at crashPointTime(k), so whatever points survive a
 * crash, the test knows the bytes each must restore to.
 */
export const CRASH_REP = 'rep_crash';
const CHUNKS = 48;

export function crashDisk(k: number): Buffer {
  const disk = Buffer.alloc(CHUNKS * CHUNK);
  for (let i = 0; i < CHUNKS; i++) {
    if (i % 6 === 5) continue; // zero chunks
    // Each point rewrites a third of the chunks; the rest keep the contents of an earlier point.
    const version = Math.max(0, k - ((i + k) % 3));
    seededBytes(version * 1000 + i, CHUNK).copy(disk, i * CHUNK);
  }
  return disk;
}

export const crashPointTime = (k: number): Date => new Date(Date.UTC(2026, 0, 1) + k * 20 * 60_000);
export const crashPointIndex = (capturedAt: string): number => (Date.parse(capturedAt) - Date.UTC(2026, 0, 1)) / (20 * 60_000);
