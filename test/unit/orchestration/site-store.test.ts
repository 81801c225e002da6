import { existsSync } from 'node:fs';
import { rename } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isRefugeError } from '../../../src/core/errors.js';
import { SiteResources } from '../../../src/orchestration/site-resources.js';
import { createTestVault, protectWithPoint, seedConfiguration, type TestVault } from '../../helpers/test-vault.js';

/**
 * A site's replica store is created on first use, but never again once the vault records points in it: a store
 * that is not there then (an unmounted volume, a renamed bucket) is an error naming it, and nothing is created in
 * its place that would hide the points and take the next ones onto the wrong disk.
 */
describe('a site store that goes missing', () => {
  let v: TestVault;
  beforeEach(async () => {
    v = await createTestVault();
    await seedConfiguration(v);
  });
  afterEach(async () => v.cleanup());

  it('is refused with the reason and the fix, is not created anew, and opens again with its points once back', async () => {
    const { replicationId, pointId } = await protectWithPoint(v);
    const vault = await v.repos.vaults.get('demo');
    const recovery = await v.repos.sites.get(vault.id, 'recovery');
    const primary = await v.repos.sites.get(vault.id, 'primary');
    expect(await v.repos.replications.hasPointsAt(recovery.id)).toBe(true);
    expect(await v.repos.replications.hasPointsAt(primary.id)).toBe(false);

    const store = recovery.config.store;
    if (store.kind !== 'filesystem') throw new Error('the test vault keeps its stores on the filesystem');
    await rename(store.path, `${store.path}.unmounted`);
    const fresh = new SiteResources(undefined, (s) => v.repos.replications.hasPointsAt(s.id));
    let caught: unknown;
    await fresh.store(recovery).catch((err: unknown) => (caught = err));
    expect(isRefugeError(caught, 'failed_precondition')).toBe(true);
    expect((caught as Error).message).toContain(`the replica store of site 'recovery' is missing at ${store.path}`);
    expect((caught as { hint?: string }).hint).toMatch(/mount/);
    expect(existsSync(store.path)).toBe(false);

    await rename(`${store.path}.unmounted`, store.path);
    const back = await fresh.store(recovery);
    expect((await back.getPoint(replicationId, pointId)).id).toBe(pointId);

    // A site without points gets its store on first use.
    const primaryStore = primary.config.store;
    if (primaryStore.kind !== 'filesystem') throw new Error('filesystem expected');
    expect(existsSync(primaryStore.path)).toBe(false);
    await fresh.store(primary);
    expect(existsSync(primaryStore.path)).toBe(true);
  });
});
