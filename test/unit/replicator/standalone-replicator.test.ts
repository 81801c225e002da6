import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ScanCapture } from '../../../src/agent/capture/scan-capture.js';
import { silentLogger } from '../../../src/core/log.js';
import { requestRaw } from '../../../src/core/http-client.js';
import { startStandaloneReplicator, type StandaloneReplicator } from '../../../src/replicator/standalone.js';
import { MiB, startAgentFixture, waitFor, type AgentFixture } from '../../helpers/agent/agent-fixture.js';

interface ReplicatorsView {
  items: { site: string; url: string; live: boolean; replications: { replicationId: string; pointsCommitted: number; bytesReceived: number; pendingBytes: number; lastCommitLagSeconds: number | null }[] }[];
}

/**
 * A standalone replicator beside a real vault: it registers by reporting, agents replicating to its site are sent
 * to it, it commits to the site's store and records the points with the vault, and its reports carry per-
 * replication churn, backlog and commit lag. It accepts data only for replications that replicate to its site.
 */
describe('standalone replicator', () => {
  let f: AgentFixture;
  let standalone: StandaloneReplicator;

  beforeEach(async () => {
    f = await startAgentFixture('rrepl-');
    const id = await f.registerReplicator('recovery');
    standalone = await startStandaloneReplicator({ vaultUrl: f.server.url, vault: 'demo', site: 'recovery', tls: { connection: id.connection, issuingCa: id.issuingCa }, log: silentLogger });
  }, 60_000); // RSA key generation (registrations) on a busy 2-core machine
  afterEach(async () => {
    await standalone.close();
    await f.close();
  });

  it('registers with the vault, receives the agent, commits points the vault records, and reports its figures', async () => {
    const shown = await f.api<ReplicatorsView>('GET', '/vaults/demo/replicators');
    expect(shown.items.map((r) => [r.site, r.url, r.live])).toEqual([['recovery', standalone.url, true]]);

    const image = join(f.dir, 'disk0.raw');
    const disk = Buffer.alloc(4 * MiB);
    randomBytes(2 * MiB).copy(disk, MiB);
    await writeFile(image, disk);
    f.startAgent(new ScanCapture({ disks: [{ name: 'disk0', path: image }] }), [{ name: 'disk0', sizeBytes: 4 * MiB }]);
    const rep = await f.enable();
    const point = await f.pointAfter(new Date(0));
    expect((await f.restore(rep, point.id)).equals(await readFile(image))).toBe(true);
    expect(standalone.replicator.counters.get(rep)?.bytesReceived).toBe(2 * MiB);
    expect(f.server.replicator.counters.get(rep)).toBeUndefined(); // the vault's own replicator saw nothing

    await waitFor(async () => ((await f.api<ReplicatorsView>('GET', '/vaults/demo/replicators')).items[0]?.replications.length ?? 0) > 0);
    const stats = (await f.api<ReplicatorsView>('GET', '/vaults/demo/replicators')).items[0]?.replications[0];
    expect(stats).toMatchObject({ replicationId: rep, bytesReceived: 2 * MiB, pendingBytes: 0 });
    expect(stats?.pointsCommitted).toBeGreaterThanOrEqual(1);
    expect(stats?.lastCommitLagSeconds).toBeGreaterThanOrEqual(0);
  });

  it('refuses data for replications that do not replicate to its site', async () => {
    await f.api('POST', '/vaults/demo/agents/register', {
      site: 'recovery', agentVersion: 't',
      machine: { name: 'vm2', hostname: 'h', os: 'linux', cpus: 1, memoryMiB: 128, disks: [{ name: 'disk0', sizeBytes: MiB }], boot: { kind: 'disk' } },
    });
    const rep = await f.api<{ id: string }>('POST', '/vaults/demo/replications', { machine: 'vm2', policy: 'default', targetSite: 'primary' });
    const vm2 = (await f.registerMachine('vm2', 'recovery')).connection;
    const r = await requestRaw('POST', `${standalone.url}/replications/${rep.id}/chunks/missing`, { body: { hashes: [] }, connection: vm2 });
    expect(r.status).toBe(409);
    expect((JSON.parse(r.text) as { error: { message: string } }).error.message).toContain("does not replicate to site 'recovery'");
    const unknown = await requestRaw('POST', `${standalone.url}/replications/rep_0000000aa_aaaaaaaa/chunks/missing`, { body: { hashes: [] }, connection: vm2 });
    expect(unknown.status).toBe(404);
  });
});
