import { isRefugeError } from '../core/errors.js';
import type { ReplicaStore } from './replica-store.js';
import { selectRetained, type RetentionPolicy } from './retention.js';

/**
 * Deletes the manifests of the points a retention policy no longer keeps. Each deletion is one atomic object
 * delete, so a crash leaves every point either whole or gone; the blobs they alone used are reclaimed by garbage
 * collection (gc.ts). A manifest that cannot be read is left alone for `verify` to report.
 */
export async function prunePoints(
  store: ReplicaStore,
  replicationId: string,
  policy: RetentionPolicy,
  options: { now?: number; dryRun?: boolean } = {},
): Promise<{ kept: string[]; pruned: string[] }> {
  const facts = [];
  for (const id of await store.listPointIds(replicationId)) {
    try {
      const p = await store.getPoint(replicationId, id);
      facts.push({ id, capturedAt: Date.parse(p.capturedAt), consistency: p.consistency });
    } catch (err) {
      if (!isRefugeError(err, 'integrity') && !isRefugeError(err, 'not_found')) throw err;
    }
  }
  const { keep, prune } = selectRetained(facts, policy, options.now ?? Date.now());
  if (!options.dryRun) for (const id of prune) await store.deletePoint(replicationId, id);
  return { kept: keep, pruned: prune };
}
