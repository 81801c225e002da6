import { open, readFile, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../core/atomic-file.js';
import type { CommitPointRequest } from '../protocol/schemas.js';
import type { BlobNaming } from '../store/chunks.js';
import { ChunkHashes } from './chunk-hashes.js';

/**
 * What the agent remembers between points (and across restarts): the last point it committed and the chunk
 * hashes of each disk in that point, so the next scan ships only chunks whose hash changed. Losing this file
 * costs one full hash comparison against the store's latest point, never a full copy.
 */
export interface AgentState {
  replicationId: string | null;
  lastPointId: string | null;
  lastPointAt: string | null;
  chunkSize: number;
  /** How the hashes were computed (the store's naming, store/chunks.ts); absent: sha256, as before format 3. */
  naming?: BlobNaming;
  disks: Record<string, ChunkHashes>;
}

export const emptyState = (): AgentState => ({ replicationId: null, lastPointId: null, lastPointAt: null, chunkSize: 0, disks: {} });

/**
 * Saved form, two files in the state folder. Written whole at every point, as it was until 2026-12-03 (JSON with
 * the hashes in base64), the state of a large disk cost its whole size per point (4 million chunks, 1 TiB of data
 * at 256 KiB chunks: a 190 MB string written every point) and failed beyond what a JavaScript string holds (about
 * 2.8 TB of data at 256 KiB chunks, 87 GB at 8 KiB). Now:
 * - `agent-state.bin`, the snapshot: `RFGSTAT1`, a uint32 LE length, that many bytes of JSON header
 *   `{ replicationId, lastPointId, lastPointAt, chunkSize, naming?, disks: [{ name, length, bytes }] }`, then each disk's
 *   ChunkHashes.records() (36 bytes per non-zero chunk) in the header's order. Replaced whole (atomically).
 * - `agent-state.log`, one JSON line per point since the snapshot:
 *   `{ parent, replicationId, lastPointId, lastPointAt, chunkSize, disks: [{ name, length, changes }] }`, appended
 *   and fsynced: a point costs its changes, not the disks' size. When the log would outgrow half of the snapshot
 *   (at least 1 MiB, at most 64 MiB), or a point is not a plain successor of the saved one (a first point, a
 *   resync, a resized disk), the snapshot is written instead and the log removed.
 * Loading applies each line that names the state so far as its parent, in order, and stops at a damaged one (the
 * last line, torn by a crash: the point it records was committed, so the agent's next commit conflicts and it
 * compares with the store, as after a lost state; unless its sent commit, kept until the state is saved, settles it).
 * An `agent-state.json` of an older agent is read while no snapshot exists.
 */
const SNAPSHOT = 'agent-state.bin';
const LOG = 'agent-state.log';
const LEGACY = 'agent-state.json';
const MAGIC = Buffer.from('RFGSTAT1');
/** The log never grows past this (it is read as one string at start): beyond, the snapshot is written. */
const LOG_MAX_BYTES = 64 * 1024 * 1024;

/** What the files hold now, per state folder: whether the next point may go to the log. */
interface Saved {
  lastPointId: string | null;
  lengths: Map<string, number>;
  snapshotBytes: number;
  logBytes: number;
  /** The log holds lines that do not follow the snapshot (a crash between the snapshot and the log's removal). */
  stale: boolean;
}
const saved = new Map<string, Saved>();

type Small = Omit<AgentState, 'disks'>;
const small = (s: AgentState | Small): Small => ({ replicationId: s.replicationId, lastPointId: s.lastPointId, lastPointAt: s.lastPointAt, chunkSize: s.chunkSize, ...(s.naming && s.naming !== 'sha256' ? { naming: s.naming } : {}) });

interface LogLine extends Small {
  parent: string | null;
  disks: { name: string; length: number; changes: [number, string | null][] }[];
}

export async function loadState(dir: string): Promise<AgentState> {
  const state = (await loadSnapshot(dir)) ?? (await loadLegacy(dir));
  const lengths = new Map(Object.entries(state.disks).map(([n, h]) => [n, h.length]));
  const record: Saved = { lastPointId: state.lastPointId, lengths, snapshotBytes: 0, logBytes: 0, stale: false };
  record.snapshotBytes = (await stat(join(dir, SNAPSHOT)).catch(() => undefined))?.size ?? 0;
  const log = await readFile(join(dir, LOG), 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') record.stale = true; // unreadable: the snapshot alone, and saved whole next
    return '';
  });
  record.logBytes = Buffer.byteLength(log);
  let current = state;
  for (const text of log.split('\n')) {
    if (!text) continue;
    let line: LogLine;
    try {
      line = JSON.parse(text) as LogLine;
    } catch {
      record.stale = true; // torn by a crash (the last line): the next point is saved whole, not appended after it
      break;
    }
    const next = applyLine(current, line);
    if (next) current = next;
    else record.stale = true;
  }
  record.lastPointId = current.lastPointId;
  saved.set(dir, record);
  return current;
}

/**
 * `state` with a log line's point applied, or undefined when the line does not follow it. The hashes are changed in
 * place: they are the loader's own, and a log of thousands of small points must not copy the disks' hashes each time.
 */
function applyLine(state: AgentState, line: LogLine): AgentState | undefined {
  if (line.parent !== state.lastPointId || line.disks.length !== Object.keys(state.disks).length) return undefined;
  if (!line.disks.every((d) => state.disks[d.name]?.length === d.length)) return undefined;
  for (const d of line.disks) for (const [i, h] of d.changes) state.disks[d.name]?.set(i, h);
  return { ...small(line), disks: state.disks };
}

async function loadSnapshot(dir: string): Promise<AgentState | undefined> {
  const f = await open(join(dir, SNAPSHOT), 'r').catch(() => undefined);
  if (!f) return undefined;
  try {
    // Read piece by piece: the file may exceed what one read (or readFile) takes, 2 GiB, for tens of millions of chunks.
    const head = await readExactly(f, 0, 12);
    if (!head?.subarray(0, 8).equals(MAGIC)) return emptyState();
    const headerLength = head.readUInt32LE(8);
    const headerBytes = await readExactly(f, 12, headerLength);
    if (!headerBytes) return emptyState();
    const header = JSON.parse(headerBytes.toString('utf8')) as Small & { disks: { name: string; length: number; bytes: number }[] };
    let at = 12 + headerLength;
    const disks: Record<string, ChunkHashes> = {};
    for (const d of header.disks) {
      const records = await readExactly(f, at, d.bytes);
      if (!records) return emptyState(); // truncated: only a comparison lost
      disks[d.name] = ChunkHashes.fromRecords(d.length, records);
      at += d.bytes;
    }
    return { ...emptyState(), ...small(header), disks };
  } catch {
    return emptyState(); // a damaged file only costs a hash comparison
  } finally {
    await f.close();
  }
}

/** `length` bytes at `position`, or undefined when the file ends sooner. */
async function readExactly(f: FileHandle, position: number, length: number): Promise<Buffer | undefined> {
  const out = Buffer.allocUnsafe(length);
  for (let done = 0; done < length; ) {
    const { bytesRead } = await f.read(out, done, Math.min(length - done, 1 << 30), position + done);
    if (bytesRead === 0) return undefined;
    done += bytesRead;
  }
  return out;
}

async function loadLegacy(dir: string): Promise<AgentState> {
  const text = await readFile(join(dir, LEGACY), 'utf8').catch(() => '');
  if (!text) return emptyState();
  try {
    const old = JSON.parse(text) as Partial<Small> & { disks?: Record<string, unknown> };
    const disks: Record<string, ChunkHashes> = {};
    for (const [name, json] of Object.entries(old.disks ?? {})) {
      const hashes = ChunkHashes.fromJSON(json);
      if (hashes) disks[name] = hashes; // a disk missing here is compared against the store or listed whole
    }
    return { ...emptyState(), ...small({ ...emptyState(), ...old }), disks };
  } catch {
    return emptyState();
  }
}

/**
 * Saves `state`. With `point` (the commit that made `state` from its parent: `state.disks` are the parent's hashes
 * with these changes), the point goes to the log when it can; otherwise, or without `point`, the snapshot is written.
 */
export async function saveState(dir: string, state: AgentState, point?: { parentId: string | null; disks: CommitPointRequest['disks'] }): Promise<void> {
  const now = saved.get(dir);
  const logRoom = now ? Math.min(Math.max(now.snapshotBytes / 2, 1024 * 1024), LOG_MAX_BYTES) - now.logBytes : 0;
  // About 80 bytes of JSON a change: a point too large for the log is never turned into one long string.
  const estimate = point ? 1024 + point.disks.reduce((n, d) => n + 80 * d.changes.length, 0) : Infinity;
  if (point && now && !now.stale && now.snapshotBytes > 0 && estimate <= logRoom && point.parentId === now.lastPointId && followsOn(now, state, point)) {
    const line: LogLine = { parent: point.parentId, ...small(state), disks: point.disks.map((d) => ({ name: d.name, length: state.disks[d.name]?.length ?? 0, changes: d.changes })) };
    const text = `${JSON.stringify(line)}\n`;
    const bytes = Buffer.byteLength(text);
    if (bytes <= logRoom) {
      const f = await open(join(dir, LOG), 'a', 0o600);
      try {
        await f.write(text);
        await f.sync();
      } finally {
        await f.close();
      }
      now.logBytes += bytes;
      now.lastPointId = state.lastPointId;
      return;
    }
  }
  const names = Object.keys(state.disks);
  const records = names.map((n) => (state.disks[n] as ChunkHashes).records());
  const header = Buffer.from(JSON.stringify({ ...small(state), disks: names.map((name, k) => ({ name, length: state.disks[name]?.length, bytes: records[k]?.length })) }));
  const length = Buffer.alloc(4);
  length.writeUInt32LE(header.length);
  const pieces = [MAGIC, length, header, ...records]; // written one after the other: no copy of the whole
  await writeFileAtomic(join(dir, SNAPSHOT), pieces);
  await rm(join(dir, LOG), { force: true });
  await rm(join(dir, LEGACY), { force: true });
  saved.set(dir, { lastPointId: state.lastPointId, lengths: new Map(names.map((n) => [n, state.disks[n]?.length ?? 0])), snapshotBytes: pieces.reduce((n, p) => n + p.length, 0), logBytes: 0, stale: false });
}

/** Whether `point` changes the saved disks in place: the same disks, none resized or of another chunk size. */
function followsOn(now: Saved, state: AgentState, point: { disks: CommitPointRequest['disks'] }): boolean {
  const names = Object.keys(state.disks);
  if (names.length !== now.lengths.size || point.disks.length !== names.length) return false;
  return point.disks.every((d) => now.lengths.get(d.name) !== undefined && now.lengths.get(d.name) === state.disks[d.name]?.length);
}
