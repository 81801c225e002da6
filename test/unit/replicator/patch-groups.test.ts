import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { RefugeError } from '../../../src/core/errors.js';
import type { BatchEntry } from '../../../src/protocol/chunk-batch.js';
import { Replicator, type ReplicationTarget } from '../../../src/replicator/replicator.js';
import { chunkHash } from '../../helpers/chunk-name.js';
import { baseLacking, type PatchOutcome, type PatchUpload } from '../../../src/store/patched-chunks.js';
import type { ReplicaStore } from '../../../src/store/replica-store.js';

/**
 * How the replicator treats the fates of a batch's patches, which the store decides in groups
 * (ReplicaStore.putPatchedChunks: its real behaviour is tested in test/unit/store/replica-store.test.ts). Here the
 * store is a stand-in answering chosen fates, so each case of the replicator's handling is certain to be reached.
 */
const CHUNK = 64 * 1024;
const entry = (): BatchEntry => ({ hash: chunkHash(randomBytes(CHUNK)), body: randomBytes(4104), compressed: false, patch: { base: chunkHash(randomBytes(CHUNK)), chunkLength: CHUNK } });

function replicatorWith(putPatchedChunks: (u: readonly PatchUpload[]) => Promise<PatchOutcome[]>) {
  const full: RefugeError[] = [];
  const target: ReplicationTarget = {
    store: { putPatchedChunks } as unknown as ReplicaStore,
    chunkSize: CHUNK,
    onCommitted: async () => undefined,
    onStoreFull: async (err) => void full.push(err),
  };
  const replicator = new Replicator({ resolve: async () => target });
  return { replicator, full, counters: () => replicator.counters.get('r1') };
}

describe('replicator: patches stored in groups', () => {
  it('lists patches whose base is missing or damaged, counts what was stored, and fails on any other refusal after the rest', async () => {
    const entries = [entry(), entry(), entry(), entry()];
    const { replicator, counters } = replicatorWith(async (uploads) => {
      expect(uploads.map((u) => u.hash)).toEqual(entries.map((e) => e.hash)); // one group, in order
      return [
        { rawLength: CHUNK },
        { error: baseLacking('x') },
        { rawLength: CHUNK },
        { error: new RefugeError('integrity', 'chunk bytes hash to y, not to the claimed z') },
      ];
    });
    await expect(replicator.putChunks('r1', entries)).rejects.toMatchObject({ code: 'invalid_argument' });
    expect(counters()).toMatchObject({ chunksReceived: 2, patchesReceived: 2, chunksRejected: 2, pendingBytes: 2 * CHUNK });
    const damaged = new RefugeError('failed_precondition', 'patch base chunk x cannot be read: it is damaged', { details: { patchBase: 'x' } });
    const { replicator: ok } = replicatorWith(async (uploads) => uploads.map((u, n) => (n === 1 ? { error: damaged } : { rawLength: u.chunkLength })));
    await expect(ok.putChunks('r1', entries)).resolves.toEqual({ stored: 3, baseMissing: [entries[1]?.hash] });
    // Another failed precondition is not a base to send whole: the batch fails with it.
    const other = new RefugeError('failed_precondition', "the replica store of site 'recovery' is missing");
    const { replicator: notBase } = replicatorWith(async (uploads) => uploads.map((u, n) => (n === 1 ? { error: other } : { rawLength: u.chunkLength })));
    await expect(notBase.putChunks('r1', entries)).rejects.toMatchObject({ code: 'failed_precondition', message: expect.stringContaining('is missing') as unknown as string });
  });

  it('reports a store that ran out of space while storing patches, as it does for whole chunks', async () => {
    const { replicator, full, counters } = replicatorWith(async () => {
      throw new RefugeError('resource_exhausted', 'writing pack p: ENOSPC: no space left on device');
    });
    await expect(replicator.putChunks('r1', [entry(), entry()])).rejects.toMatchObject({ code: 'resource_exhausted' });
    expect(full.map((e) => e.message)).toEqual(['writing pack p: ENOSPC: no space left on device']);
    expect(counters()?.chunksRejected).toBe(1);
  });
});
