import { writeRegistration } from '../helpers/registration.js';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/core/package-root.js';
import { GUEST_CMDLINE, ensureDemoGuest } from '../../src/fabric/demo-guest.js';
import { QemuProvider } from '../../src/fabric/qemu/qemu-provider.js';
import { FilesystemBackend } from '../../src/store/backends/filesystem.js';
import { ReplicaStore } from '../../src/store/replica-store.js';
import type { JobView } from '../../src/vault/jobs/definitions.js';
import { MiB, waitFor } from '../helpers/agent/agent-fixture.js';
import { RECORD_BYTES, ackedRecords, checkRecords, headRecord } from '../helpers/agent/records.js';
import { createTwoSites, type TwoSites } from '../helpers/netns.js';
import { startRecoveryVault } from '../helpers/recovery-vault.js';

const RECORDS = 800;
const SIZE = 64 * MiB;
const bin = join(packageRoot(), 'bin', 'refuge.js');

type Rep = { id: string; state: string; reversed: boolean; sourceSite: string; targetSite: string; failover: { failover?: { pointId: string; disks: string[] } } };
type Replicators = { items: { site: string; live: boolean; reportedAt: string; replications: { replicationId: string; pointsCommitted: number; bytesReceived: number; wireBytesReceived: number }[] }[] };

/** Bytes in 4 KiB blocks that differ between two images of the same size. */
function differingBytes(a: Buffer, b: Buffer): number {
  let n = 0;
  for (let at = 0; at < a.length; at += RECORD_BYTES) if (!a.subarray(at, at + RECORD_BYTES).equals(b.subarray(at, at + RECORD_BYTES))) n += RECORD_BYTES;
  return n;
}

/**
 * Issue 6, must show 1: two sites as network namespaces on this machine. At `primary`, a real qemu guest writes
 * numbered records through a cdp agent, which ships to the vault (and its replicator) at `recovery`; a standalone
 * replicator serves `primary` for the way back. The link between the sites goes down mid-workload and the vault,
 * alone at `recovery`, fails over unplanned to the latest point: the recovered guest boots, and its disk holds an
 * unbroken prefix of the records. After commit, the link comes back and re-protect seeds `primary` from the disk
 * still there, so the recovery-site agent ships only the blocks that differ (at most 1.2x of them, from the
 * primary replicator's counters). Failback (planned: stop, final point, boot at home) loses no byte.
 */
describe('two sites: unplanned failover with the primary cut off, delta re-protect, lossless failback', () => {
  let sites: TwoSites;
  let dir: string;
  let api: <T = Record<string, unknown>>(method: string, path: string, body?: unknown) => Promise<T>;
  let image: string;
  let primaryVm: QemuProvider;
  const fabricAt = (site: string) => new QemuProvider({ workDir: join(dir, 'vault', 'sites', site, 'machines') });
  const storeAt = (site: string) => ReplicaStore.open(new FilesystemBackend(join(dir, 'vault', 'sites', site, 'store')));
  const ackSeenAt = new Map<number, number>();
  let cutAt = 0;
  let failoverPoint = '';
  let recoveredDisk = '';
  let repId = '';
  let recoveryAgentRegistration = '';
  let reprotect: JobView;
  let changedBytes = 0;
  let replicatorWireBytes = 0;

  const job = async (op: string, body: unknown = {}, timeoutMs = 240_000): Promise<JobView> => {
    const started = await api<JobView>('POST', `/vaults/demo/replications/vm1/${op}`, body);
    let j = started;
    await waitFor(async () => {
      j = await api<JobView>('GET', `/vaults/demo/jobs/${started.id}`);
      return ['succeeded', 'failed', 'cancelled'].includes(j.state);
    }, timeoutMs, `${op} job`);
    return j;
  };
  const rep = () => api<Rep>('GET', '/vaults/demo/replications/vm1');

  beforeAll(async () => {
    sites = await createTwoSites();
    dir = await mkdtemp(join(tmpdir(), 'orch-two-sites-'));
    const guest = await ensureDemoGuest();
    const cmdline = `${GUEST_CMDLINE} refuge.workload=records refuge.records=${RECORDS}`;

    // The vault at recovery, with a certificate for its service address there.
    const vault = await startRecoveryVault(sites, dir, { policy: { crashIntervalSeconds: 2 } });
    const { url } = vault;
    api = vault.api;
    // One registration file (one-time key) per process; each keeps its certificate in its state folder.
    const replicatorRegistration = await writeRegistration(api, url, join(dir, 'replicator-primary-registration.json'));
    const agentRegistration = await writeRegistration(api, url, join(dir, 'agent-primary-registration.json'));
    recoveryAgentRegistration = await writeRegistration(api, url, join(dir, 'agent-recovery-registration.json'));
    const refuge = (ns: string, credentials: string, args: string[], log: string) => sites.spawnIn(ns, process.execPath, [bin, '--credentials', credentials, '--vault', 'demo', ...args], join(dir, log), { REFUGE_LOG_LEVEL: 'info' });

    // At primary: its replicator (for the way back), the agent serving the disk over NBD, the guest writing records.
    refuge(sites.primary, replicatorRegistration, ['replicator', '--site', 'primary', '--listen', `${sites.primaryService}:0`, '--state-dir', join(dir, 'replicator-primary')], 'replicator-primary.log');
    await waitFor(async () => (await api<Replicators>('GET', '/vaults/demo/replicators')).items.length === 1, 60_000, 'the primary replicator registering');
    image = join(dir, 'primary-disk0.raw');
    await writeFile(image, '');
    await truncate(image, SIZE);
    const boot = ['--boot-kernel', guest.kernel, '--boot-initrd', guest.initrd, '--boot-cmdline', cmdline];
    refuge(sites.primary, agentRegistration, ['agent', '--site', 'primary', '--name', 'vm1', '--disk', `disk0=${image}`, '--capture', 'cdp', '--state-dir', join(dir, 'agent-primary'), '--heartbeat', '1s', ...boot], 'agent-primary.log');
    await waitFor(async () => (await api<{ items: unknown[] }>('GET', '/vaults/demo/machines')).items.length === 1, 60_000, 'the primary agent registering');
    repId = (await api<{ id: string }>('POST', '/vaults/demo/replications', { machine: 'vm1', policy: 'default', targetSite: 'recovery' })).id;
    await waitFor(async () => (await rep()).state === 'protected', 120_000, 'the first point');

    primaryVm = new QemuProvider({ workDir: join(dir, 'primary-vm') });
    await primaryVm.start({
      name: 'vm1',
      cpus: 1,
      memoryMiB: 256,
      disks: [{ path: `nbd+unix:///disk0?socket=${join(dir, 'agent-primary', 'nbd', 'disk0.sock')}`, format: 'raw' }],
      boot: { kind: 'kernel', kernel: guest.kernel, initrd: guest.initrd, cmdline },
    });
    // A third of the way through the records, the primary site is cut off; its guest writes on, unreplicated.
    await waitFor(async () => {
      const text = await primaryVm.console('vm1');
      if (text.includes('refuge-guest: error:')) throw new Error(`guest failed: ${text.slice(-500)}`);
      const now = Date.now();
      for (const n of ackedRecords(text)) if (!ackSeenAt.has(n)) ackSeenAt.set(n, now);
      return ackSeenAt.size >= RECORDS / 3;
    }, 300_000, 'the primary guest writing records');
    await new Promise((r) => setTimeout(r, 3000)); // a point or two of the records so far
    cutAt = Date.now();
    await sites.cut();
    await waitFor(async () => (await primaryVm.console('vm1')).includes('refuge-guest: records done'), 300_000, 'the primary guest finishing, cut off');
  }, 900_000);

  afterAll(async () => {
    await primaryVm?.delete('vm1').catch(() => undefined);
    for (const site of ['primary', 'recovery']) await fabricAt(site).delete('vm1').catch(() => undefined);
    await sites?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('fails over at recovery alone to the latest point; the recovered guest boots on an unbroken prefix of its records', async () => {
    const done = await job('failover', { point: 'latest', override: { reason: 'primary site cut off (test)' } });
    expect(done.state, JSON.stringify(done.error)).toBe('succeeded');
    const r = await rep();
    failoverPoint = r.failover.failover?.pointId as string;
    recoveredDisk = r.failover.failover?.disks[0] as string;
    expect(r.state).toBe('failed-over');

    const store = await storeAt('recovery');
    const point = await store.getPoint(repId, failoverPoint);
    expect(Date.parse(point.capturedAt)).toBeLessThanOrEqual(cutAt + 1000);
    const { prefix, problems } = checkRecords(await store.readRange(point, 'disk0', 0, (RECORDS + 16) * RECORD_BYTES));
    expect(problems).toEqual([]);
    const head = headRecord(await store.readRange(point, 'disk0', SIZE - RECORD_BYTES, RECORD_BYTES));
    expect(head).toBeLessThan(prefix);
    const mustHold = Math.max(-1, ...[...ackSeenAt].filter(([, seen]) => seen < Date.parse(point.capturedAt)).map(([n]) => n)) + 1;
    expect(prefix).toBeGreaterThanOrEqual(mustHold);
    expect(prefix).toBeGreaterThan(0);
    expect(prefix).toBeLessThan(RECORDS); // the records written after the cut are not there

    // The recovered guest boots at recovery and runs its workload there (changes since failover).
    await waitFor(async () => (await fabricAt('recovery').console('vm1')).includes('refuge-guest: records done'), 300_000, 'the recovered guest at recovery');
    expect((await job('commit')).state).toBe('succeeded');
  }, 600_000);

  it('re-protect seeds primary from the disk still there and ships at most 1.2x the bytes that differ', async () => {
    expect(failoverPoint).not.toBe('');
    // The primary site comes back; its old machine is shut down; its old agent stays and is told to stop.
    await primaryVm.stop('vm1');
    await sites.reconnect();
    const guest = await ensureDemoGuest();
    const boot = ['--boot-kernel', guest.kernel, '--boot-initrd', guest.initrd, '--boot-cmdline', `${GUEST_CMDLINE} refuge.workload=records refuge.records=${RECORDS}`];
    sites.spawnIn(sites.recovery, process.execPath, [bin, '--credentials', recoveryAgentRegistration, '--vault', 'demo', 'agent', '--site', 'recovery', '--name', 'vm1', '--disk', `disk0=${recoveredDisk}`, '--capture', 'scan', '--state-dir', join(dir, 'agent-recovery'), '--heartbeat', '1s', ...boot], join(dir, 'agent-recovery.log'), { REFUGE_LOG_LEVEL: 'info' });

    // The primary's replicator reports again once the link is back: the vault then sends agents there.
    const since = Date.now();
    await waitFor(async () => {
      const p = (await api<Replicators>('GET', '/vaults/demo/replicators')).items.find((i) => i.site === 'primary');
      return p?.live === true && Date.parse(p.reportedAt) > since;
    }, 60_000, 'the primary replicator reporting after the link came back');
    reprotect = await job('reprotect', {}, 300_000);
    expect(reprotect.state, JSON.stringify(reprotect.error)).toBe('succeeded');
    expect(reprotect.result.seed).toMatchObject({ mode: 'former-disks' });
    const r = await rep();
    expect(r).toMatchObject({ state: 'protected', reversed: true, sourceSite: 'recovery', targetSite: 'primary' });

    // What differs between the disk at primary and the recovered one: the records the recovered guest rewrote,
    // the records primary wrote after the cut, and the head.
    changedBytes = differingBytes(await readFile(image), await readFile(recoveredDisk));
    expect(changedBytes).toBeGreaterThan(RECORDS * RECORD_BYTES / 2);
    await waitFor(async () => {
      const items = (await api<Replicators>('GET', '/vaults/demo/replicators')).items;
      const c = items.find((i) => i.site === 'primary')?.replications.find((x) => x.replicationId === repId);
      if (!c || c.pointsCommitted < 1) return false;
      replicatorWireBytes = c.wireBytesReceived;
      return true;
    }, 60_000, 'the primary replicator reporting the first point');
    expect(replicatorWireBytes).toBeGreaterThan(0);
    expect(replicatorWireBytes).toBeLessThanOrEqual(1.2 * changedBytes);
    expect(replicatorWireBytes).toBeLessThan(SIZE / 8); // far from a full copy
    // The recovery agent compared with the seed and sent patches of the blocks that differ.
    const log = await readFile(join(dir, 'agent-recovery.log'), 'utf8');
    // Counted up to the first commit, cuts abandoned before it included (what they uploaded is deduplicated after).
    const lines = log.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg: string; wireBytes: number; patches: number; level: number });
    const firstAt = lines.findIndex((l) => l.msg === 'recovery point committed');
    const first = lines[firstAt];
    const before = lines.slice(0, Math.max(0, firstAt)).filter((l) => l.msg.startsWith('cut abandoned'));
    const why = JSON.stringify(lines.slice(0, firstAt + 1).filter((l) => l.level >= 40 || l.msg.startsWith('cut abandoned')));
    expect(before.reduce((n, l) => n + l.patches, first?.patches ?? 0), why).toBeGreaterThan(0);
    expect(first?.wireBytes).toBeLessThanOrEqual(replicatorWireBytes);
    expect(first?.wireBytes).toBeGreaterThan(0);
  }, 600_000);

  it('failback stops the machine at recovery, ships its last writes and boots them at primary: no byte lost', async () => {
    expect(reprotect?.state).toBe('succeeded');
    const done = await job('failback', { override: { reason: 'test' } });
    expect(done.state, JSON.stringify(done.error)).toBe('succeeded');
    const r = await rep();
    expect(r).toMatchObject({ state: 'failed-over', reversed: true });
    // The final point (shipped after the stop) equals the recovered disk as the stopped machine left it.
    const store = await storeAt('primary');
    await store.blobs.refresh();
    const final = await store.getPoint(repId, done.result.pointId as string);
    const atRecovery = await readFile(recoveredDisk);
    expect((await store.readRange(final, 'disk0', 0, SIZE)).equals(atRecovery)).toBe(true);
    expect(checkRecords(atRecovery.subarray(0, (RECORDS + 16) * RECORD_BYTES))).toEqual({ prefix: RECORDS, problems: [] });
    await waitFor(async () => (await fabricAt('primary').console('vm1')).includes('refuge-guest: up'), 120_000, 'the failed-back guest booting at primary');
  }, 600_000);
});
