import { RefugeError, isRefugeError } from '../core/errors.js';
import type { StoreBackend } from './backend.js';
import { isChunkHash } from './chunks.js';
import { decodeSummedJson, encodeSummedJson } from './manifest.js';
import type { DataKey } from './sealing.js';

/**
 * Staged changes: the change list of a point that is too long for one commit arrives in parts before its commit.
 * A first point of a large disk lists every non-zero chunk, about 76 bytes of JSON each: 880,000 entries (215 GiB
 * in 256 KiB chunks) fill the 64 MiB commit body, and a 2 TiB disk would need half a gigabyte of one JSON document,
 * beyond what a JavaScript string holds. So the agent sends the list in parts (`POST /points/staged`), each stored
 * as its own object, and commits with the last part and the stage's id; the commit reads the parts one at a time
 * (ReplicaStore.commitPoint), so neither side ever holds the whole list at once.
 *
 * Each part is `staging/<replication>/<stage>/<part>.json`, the part number zero-padded to six digits, written as a
 * manifest is (manifest.ts `encodeSummedJson`: JSON with its SHA-256, sealed in an encrypted store):
 *   { "format": 1, "createdAt": ISO time, "disks": [{ "name": disk, "changes": [[index, hash or null], ...] }] }
 * Writing a part again replaces it (a retried upload). Parts are read in part order, then the commit's own
 * changes; an index listed twice takes its last listing. The commit deletes its stage. Garbage collection counts the
 * chunks a stage lists as live (an upload of hours must not lose its first chunks) and deletes stages untouched
 * for STAGE_MAX_AGE_MS, which an agent abandoned.
 */

export const STAGING_PREFIX = 'staging/';
/** Largest part number (and so at most a million parts of a stage). */
export const MAX_STAGE_PART = 999_999;
/** A stage none of whose parts was written for this long is abandoned. */
export const STAGE_MAX_AGE_MS = 7 * 24 * 3600_000;
const STAGE_ID = /^[a-z]{1,8}_[0-9a-z]{9}_[a-z2-7]{8}$/;

export interface StagedDisk {
  name: string;
  changes: [number, string | null][];
}

interface StagedPart {
  format: 1;
  createdAt: string;
  disks: StagedDisk[];
}

export const stagePrefix = (replicationId: string, stageId: string): string => `${STAGING_PREFIX}${replicationId}/${stageId}/`;
const partKey = (replicationId: string, stageId: string, part: number): string => `${stagePrefix(replicationId, stageId)}${String(part).padStart(6, '0')}.json`;

export function checkStageId(stageId: string): void {
  if (!STAGE_ID.test(stageId)) throw new RefugeError('invalid_argument', `'${stageId}' is not a stage id`);
}

export async function writeStagedPart(backend: StoreBackend, key: DataKey, replicationId: string, stageId: string, part: number, disks: StagedDisk[]): Promise<void> {
  checkStageId(stageId);
  if (!Number.isInteger(part) || part < 0 || part > MAX_STAGE_PART) throw new RefugeError('invalid_argument', `stage part ${part} is outside 0..${MAX_STAGE_PART}`);
  for (const d of disks) {
    for (const [index, hash] of d.changes) {
      if (!Number.isSafeInteger(index) || index < 0) throw new RefugeError('invalid_argument', `disk '${d.name}': chunk index ${index} is not usable`);
      if (hash !== null && !isChunkHash(hash)) throw new RefugeError('invalid_argument', `disk '${d.name}': '${hash}' is not a chunk hash`);
    }
  }
  const doc: StagedPart = { format: 1, createdAt: new Date().toISOString(), disks };
  await backend.put(partKey(replicationId, stageId, part), encodeSummedJson(doc, key));
}

/** The keys of a stage's parts in part order; a stage with none is an error naming it. */
export async function stagedPartKeys(backend: StoreBackend, replicationId: string, stageId: string): Promise<string[]> {
  checkStageId(stageId);
  const keys = (await backend.list(stagePrefix(replicationId, stageId))).filter((k) => k.endsWith('.json')).sort();
  if (keys.length === 0) {
    throw new RefugeError('failed_precondition', `stage ${stageId} of replication ${replicationId} holds no staged changes (never sent, committed already, or abandoned)`, {
      hint: 'send the point\'s changes again, then commit',
    });
  }
  return keys;
}

export async function readStagedPart(backend: StoreBackend, key: DataKey, object: string): Promise<{ createdAt: number; disks: StagedDisk[] }> {
  const doc = decodeSummedJson<StagedPart>(await backend.get(object), object, key, 'staged change list');
  if (doc.format !== 1) throw new RefugeError('failed_precondition', `staged change list ${object} has unsupported format ${String(doc.format)}`);
  return { createdAt: Date.parse(doc.createdAt), disks: doc.disks };
}

export async function dropStage(backend: StoreBackend, replicationId: string, stageId: string): Promise<void> {
  for (const k of await backend.list(stagePrefix(replicationId, stageId))) await backend.delete(k);
}

/**
 * For garbage collection: calls `onChunk` for every chunk the stages list, and deletes (with `dropAbandoned`) the
 * stages whose newest part is older than STAGE_MAX_AGE_MS (their chunks are marked all the same: kept until the next
 * collection); how many stages are abandoned. A part that cannot be read (deleted meanwhile by its commit, or damaged, which fails its
 * commit) marks nothing.
 */
export async function markStagedChunks(backend: StoreBackend, key: DataKey, o: { now: number; dropAbandoned: boolean }, onChunk: (hash: string) => void): Promise<number> {
  const stages = new Map<string, string[]>();
  for (const k of await backend.list(STAGING_PREFIX)) {
    if (!k.endsWith('.json')) continue;
    const stage = k.slice(0, k.lastIndexOf('/') + 1);
    stages.set(stage, [...(stages.get(stage) ?? []), k]);
  }
  let dropped = 0;
  for (const keys of stages.values()) {
    let newest = 0;
    for (const k of keys) {
      const part = await readStagedPart(backend, key, k).catch((err: unknown) => {
        if (isRefugeError(err, 'not_found') || isRefugeError(err, 'integrity')) return undefined;
        throw err;
      });
      if (!part) continue;
      newest = Math.max(newest, part.createdAt);
      for (const d of part.disks) for (const [, h] of d.changes) if (h !== null) onChunk(h);
    }
    if (o.now - newest > STAGE_MAX_AGE_MS) {
      if (o.dropAbandoned) for (const k of keys) await backend.delete(k);
      dropped++;
    }
  }
  return dropped;
}
