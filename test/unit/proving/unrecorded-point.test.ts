import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FilesystemBackend } from '../../../src/store/backends/filesystem.js';
import { ReplicaStore } from '../../../src/store/replica-store.js';
import { createTestVault, protectWithPoint, seedConfiguration, type TestVault } from '../../helpers/test-vault.js';

/**
 * Found by the kill -9 harness (R1): a standalone replicator killed after writing a point's manifest and before
 * recording it with the vault left the vault naming the older point as latest. The agent, sent back to that point
 * by every heartbeat, was refused by the store (parent not the latest) for ever. Now the refusal records the
 * store's latest point with the vault first, so the next heartbeat names it and the agent's next commit fits.
 */
describe('a point in the store the vault never recorded', () => {
  let v: TestVault;
  beforeEach(async () => {
    v = await createTestVault();
    await seedConfiguration(v);
  });
  afterEach(async () => v.cleanup());

  it('is recorded when a commit on the older point is refused, so the agent and the store agree again', async () => {
    const { replicationId, pointId } = await protectWithPoint(v);
    // Another process (a standalone replicator) commits a point and dies before telling the vault.
    const store = await ReplicaStore.open(new FilesystemBackend(join(v.dataDir, 'sites', 'recovery', 'store')));
    const orphan = await store.commitPoint({ replicationId, parentId: pointId, capturedAt: new Date(), consistency: 'crash', disks: [{ name: 'disk0', sizeBytes: 4 * 262144, changes: [[1, null]] }] });
    const latest = async () => (await v.call<{ items: { id: string }[] }>('GET', '/api/v1/vaults/demo/replications/vm1/points')).body.items[0]?.id;
    expect(await latest()).toBe(pointId);

    const r = await v.call<{ error: { code: string; latestPointId: string } }>('POST', `/replicator/v1/replications/${replicationId}/points`, {
      parentId: pointId, capturedAt: new Date().toISOString(), consistency: 'crash', disks: [{ name: 'disk0', sizeBytes: 4 * 262144, changes: [] }],
    });
    expect([r.status, r.body.error.code, r.body.error.latestPointId]).toEqual([409, 'conflict', orphan.id]);
    expect(await latest()).toBe(orphan.id);
    const beat = await v.call<{ replication: { latestPointId: string } }>('POST', '/api/v1/vaults/demo/agents/vm1/heartbeat', { agentVersion: '0.3.0' });
    expect(beat.body.replication.latestPointId).toBe(orphan.id);
  });
});
