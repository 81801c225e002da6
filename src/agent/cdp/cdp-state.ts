import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../core/atomic-file.js';
import { BlockBitmap } from './block-bitmap.js';

/**
 * What cdp capture keeps in the agent's state folder between runs (`cdp-state.json`), and how a restarted agent
 * decides what it still knows about each disk:
 * - after a clean stop: the exact blocks written since the last completed cut (ships as patches, nothing read twice);
 * - after the agent was killed, on the same host boot: the regions its write-intent log names (compared by hash);
 * - otherwise (host rebooted, state lost, image changed behind the agent's back): nothing, so every chunk is
 *   compared by hash against the last point. Only differences are ever shipped; this costs reading the disk.
 */
export interface CdpState {
  /** The host boot the page-cache-only write-intent logs belong to. */
  bootId: string;
  /** True only when written by a clean stop; the first thing a started agent writes is `clean: false`. */
  clean: boolean;
  disks: Record<string, { sizeBytes: number; mtimeMs: number; uncommitted: ReturnType<BlockBitmap['toJSON']> }>;
}

const FILE = 'cdp-state.json';

export async function loadCdpState(dir: string): Promise<CdpState | undefined> {
  const text = await readFile(join(dir, FILE), 'utf8').catch(() => '');
  if (!text) return undefined;
  try {
    return JSON.parse(text) as CdpState;
  } catch {
    return undefined; // damaged: treated as lost tracking, which only costs a hash comparison
  }
}

export function saveCdpState(dir: string, state: CdpState): Promise<void> {
  return writeFileAtomic(join(dir, FILE), JSON.stringify(state));
}

export async function currentBootId(): Promise<string> {
  return (await readFile('/proc/sys/kernel/random/boot_id', 'utf8').catch(() => 'unknown')).trim();
}

export type TrackingOrigin = 'clean-stop' | 'intent-log' | 'lost';

/** The marks a disk starts with, and where they came from (logged, and asserted by tests). */
export async function initialMarks(o: {
  saved: CdpState | undefined;
  bootId: string;
  disk: string;
  path: string;
  sizeBytes: number;
  logRegions: number[] | undefined;
}): Promise<{ marks: BlockBitmap; origin: TrackingOrigin }> {
  const marks = new BlockBitmap(o.sizeBytes);
  const savedDisk = o.saved?.disks[o.disk];
  if (o.saved?.clean && savedDisk && savedDisk.sizeBytes === o.sizeBytes) {
    const mtimeMs = (await stat(o.path)).mtimeMs;
    if (mtimeMs === savedDisk.mtimeMs) {
      try {
        return { marks: BlockBitmap.fromJSON(savedDisk.uncommitted), origin: 'clean-stop' };
      } catch {
        // fall through: a damaged bitmap is lost tracking
      }
    }
  } else if (o.saved && !o.saved.clean && o.saved.bootId === o.bootId && o.bootId !== 'unknown' && o.logRegions) {
    for (const r of o.logRegions) marks.markRegion(r);
    return { marks, origin: 'intent-log' };
  }
  marks.markAll();
  return { marks, origin: 'lost' };
}
