import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../core/atomic-file.js';
import { isRefugeError, type ErrorCode } from '../core/errors.js';
import type { CommitPointRequest } from '../protocol/schemas.js';
import type { BlobNaming } from '../store/chunks.js';
import type { ChunkHashes } from './chunk-hashes.js';

/**
 * A commit sent and not yet answered, kept on disk (agent-commit.json) until it is. A commit can land while its
 * answer is lost: the agent killed while it was under way, or the link down for longer than the retries. The next
 * point would then name a stale parent (409), or the vault a latest point the agent never heard of, and the agent
 * would compare every chunk of every disk with it: a full read of the disks (hours for large ones), though only
 * differences travel. Instead, the agent sends the same commit again before it cuts anything new; the replicator
 * answers with the point it made then (a replay: same parent, same capture instant) or makes it now, and the
 * agent's chunk hashes are its parent's with the commit's changes (`hashesAfter`).
 *
 * Why the next cut may then list only what the capture tracked: the commit's cut was never completed (completion
 * follows the answer), so the capture still lists every chunk written since the parent's cut, which covers the
 * commit's changes and everything after. A cut completed meanwhile without a point (a re-protect's pre-hash)
 * breaks that, so the agent forgets the sent commit then (`clearSentCommit`).
 */
export interface SentCommit {
  replicationId: string;
  chunkSize: number;
  /** How its chunks were named (the store's naming, store/chunks.ts); absent: sha256. */
  naming?: BlobNaming;
  request: CommitPointRequest;
  /**
   * The changes were found against something other than the hashes the agent remembers (every chunk compared: a
   * resync against the store's hashes, a first point): they cannot be applied to the remembered ones.
   */
  comparedWithStore?: boolean;
}

const FILE = 'agent-commit.json';

export async function loadSentCommit(dir: string): Promise<SentCommit | undefined> {
  const text = await readFile(join(dir, FILE), 'utf8').catch(() => '');
  if (!text) return undefined;
  try {
    const sent = JSON.parse(text) as Partial<SentCommit>;
    const ok = typeof sent.replicationId === 'string' && typeof sent.chunkSize === 'number' && Array.isArray(sent.request?.disks);
    return ok ? (sent as SentCommit) : undefined;
  } catch {
    return undefined; // a damaged file only costs the comparison this file exists to spare
  }
}

export function saveSentCommit(dir: string, sent: SentCommit): Promise<void> {
  return writeFileAtomic(join(dir, FILE), JSON.stringify(sent));
}

export function clearSentCommit(dir: string): Promise<void> {
  return rm(join(dir, FILE), { force: true });
}

/** The replicator has refused the commit for good (it will never land as sent); otherwise its outcome is unknown. */
export function refusedForGood(err: unknown): boolean {
  const final: ErrorCode[] = ['conflict', 'failed_precondition', 'invalid_argument', 'not_found', 'operation_not_allowed', 'payload_too_large'];
  return isRefugeError(err) && final.includes(err.code);
}

/**
 * The chunk hashes of the point `request` made: its parent's (`parent`) with its changes. Undefined unless every
 * disk's parent hashes are known at the disk's size (then the agent compares against the store instead), and for a
 * staged commit, whose request carries only the last part of its changes (the rest went ahead, staged-commit.ts).
 */
export function hashesAfter(parent: Record<string, ChunkHashes>, request: CommitPointRequest, chunkSize: number): Record<string, ChunkHashes> | undefined {
  if (request.stageId !== undefined) return undefined;
  const after: Record<string, ChunkHashes> = {};
  for (const d of request.disks) {
    const known = parent[d.name];
    if (!known || known.length !== Math.ceil(d.sizeBytes / chunkSize)) return undefined;
    const hashes = known.clone();
    for (const [index, hash] of d.changes) hashes.set(index, hash);
    after[d.name] = hashes;
  }
  return after;
}
