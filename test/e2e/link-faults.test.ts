import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/core/package-root.js';
import { DEFAULT_CHUNK_SIZE } from '../../src/store/chunks.js';
import { FilesystemBackend } from '../../src/store/backends/filesystem.js';
import { ReplicaStore } from '../../src/store/replica-store.js';
import { MiB, waitFor } from '../helpers/agent/agent-fixture.js';
import { NBD, RawNbdClient } from '../helpers/agent/raw-nbd-client.js';
import { RECORD_BYTES, checkRecords, recordBlock } from '../helpers/agent/records.js';
import { figure } from '../helpers/figures.js';
import { createTwoSites, type TwoSites } from '../helpers/netns.js';
import { startRecoveryVault } from '../helpers/recovery-vault.js';
import { writeRegistration } from '../helpers/registration.js';

const SIZE = 32 * MiB;
/** The writer's pace: a 4 KiB record every 80 ms, about 50 KiB/s, well under what the degraded link carries. */
const WRITE_EVERY_MS = 80;
const LINK = { rateKbit: 4000, lossPercent: 4 };
const DEGRADED_SECONDS = 25;
const RPO_THRESHOLD_SECONDS = 10;
const CUT_SECONDS = 120;
/** d) 2 MiB written at once just before the link goes down: an upload of several seconds on the degraded link. */
const BURST_RECORDS = 512;
const MID_UPLOAD_CUT_SECONDS = 15;
const bin = join(packageRoot(), 'bin', 'refuge.js');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Point { id: string; capturedAt: string; committedAt: string }
interface Alert { id: string; kind: string; subject: string; severity: string; state: string; message: string; firstAt: string; resolvedAt: string | null }
interface RepView { state: string; health: string; healthErrors: { code: string }[]; progress: { phase: string; doneBytes: number; pendingBytes: number } | null }
type Counters = { pointsCommitted: number; bytesReceived: number; wireBytesReceived: number };
type Replicators = { items: { site: string; live: boolean; reportedAt: string; replications: (Counters & { replicationId: string })[] }[] };

/** A TCP transfer of `bytes` from primary to recovery: what the link carries (goodput), in kbit/s. */
async function linkGoodputKbit(sites: TwoSites, dir: string, bytes: number): Promise<number> {
  const server = sites.spawnIn(sites.recovery, process.execPath, ['-e', `
    const s = require('node:net').createServer((c) => { let n = 0; c.on('data', (d) => { n += d.length; if (n >= ${bytes}) c.end('ok'); }); });
    s.listen(0, '${sites.recoveryService}', () => console.log('port ' + s.address().port));`], join(dir, 'probe-server.log'));
  await waitFor(() => /port (\d+)/.test(server.output()), 10_000, 'the link probe listening');
  const port = (/port (\d+)/.exec(server.output()) as RegExpExecArray)[1] as string;
  const client = sites.spawnIn(sites.primary, process.execPath, ['-e', `
    const started = Date.now();
    const c = require('node:net').connect(${port}, '${sites.recoveryService}', () => c.end(Buffer.alloc(${bytes}, 7)));
    c.on('data', () => { console.log('ms ' + (Date.now() - started)); c.destroy(); });`], join(dir, 'probe-client.log'));
  await waitFor(() => /ms (\d+)/.test(client.output()), 60_000, 'the link probe transfer');
  server.kill('SIGKILL');
  const ms = Number((/ms (\d+)/.exec(client.output()) as RegExpExecArray)[1]);
  return Math.round((bytes * 8) / ms);
}

/**
 * Reliability row R2 (issue 8): the link between the sites slowed and lossy, then cut, then back. A cdp agent at
 * `primary` serves a disk over NBD; the test writes numbered records to it at a steady pace (as the demo guest's
 * record workload does) and knows when each was sent and acknowledged. The vault and a standalone replicator run at
 * `recovery` (the replicator's counters say what crossed the link).
 *
 * a) Link at 4 Mbit/s each way with 4% of packets dropped each way (tc tbf and iptables' statistic match: this
 *    kernel has no netem): points keep coming, each holds an unbroken prefix of the records containing every record
 *    acknowledged before its capture and none sent after it, and the last one equals the disk byte for byte.
 * b) Link down for 2 minutes while records go on: the vault raises the RPO alert for the replication and its health
 *    leaves normal; no point is made.
 * c) Link up: the agent catches up by itself, the new point equals the disk, the alert resolves, and the replicator
 *    received about the bytes written while cut (at most 1.2x plus one chunk), not a full resync.
 * d) Link down while the agent ships a 2 MiB burst over the degraded link, back after 15 s (still degraded): the
 *    agent restarts the upload stuck on its old connections as soon as a heartbeat gets through, the point equals
 *    the disk, and the burst crossed about once.
 */
describe('R2: a slow and lossy link, then a cut link: nothing lost, RPO alert while cut, catch-up without resync', () => {
  let sites: TwoSites;
  let dir: string;
  let image: string;
  let repId = '';
  let api: <T = Record<string, unknown>>(method: string, path: string, body?: unknown) => Promise<T>;
  let nbd: RawNbdClient;
  const sentAt: number[] = [];
  const ackedAt: number[] = [];
  let writer: { stop: boolean; done: Promise<void> } | undefined;
  let phaseA: { points: Point[]; last: Point; goodputKbit: number; packets: number; dropped: number; records: number; seconds: number } | undefined;
  let cut: { at: number; baselineWire: number; baselineBytes: number; firstRecord: number; records: number; alert: Alert } | undefined;
  let caughtUp: Point | undefined;

  const points = async () => (await api<{ items: Point[] }>('GET', '/vaults/demo/replications/vm1/points?limit=1000')).items.sort((a, b) => Date.parse(a.capturedAt) - Date.parse(b.capturedAt));
  const store = async () => ReplicaStore.open(new FilesystemBackend(join(dir, 'vault', 'sites', 'recovery', 'store')));
  const counters = async (after = 0): Promise<Counters | undefined> => {
    const r = (await api<Replicators>('GET', '/vaults/demo/replicators')).items.find((i) => i.site === 'recovery');
    if (!r || Date.parse(r.reportedAt) <= after) return undefined;
    return r.replications.find((x) => x.replicationId === repId);
  };
  /** The first point captured after `t` (ms), once committed. */
  const pointAfter = async (t: number, timeoutMs: number, what: string): Promise<Point> => {
    let found: Point | undefined;
    await waitFor(async () => (found = (await points()).find((p) => Date.parse(p.capturedAt) > t)) !== undefined, timeoutMs, what);
    return found as Point;
  };

  const startWriter = () => {
    const w = { stop: false, done: Promise.resolve() };
    w.done = (async () => {
      while (!w.stop) {
        const n = sentAt.length;
        sentAt.push(Date.now());
        nbd.request(NBD.cmd.write, BigInt(n + 1), n * RECORD_BYTES, RECORD_BYTES, 0, recordBlock(n));
        const r = await nbd.reply();
        if (r.error !== 0) throw new Error(`record ${n}: NBD write failed with errno ${r.error}`);
        ackedAt.push(Date.now());
        await sleep(WRITE_EVERY_MS);
      }
    })();
    writer = w;
  };
  const stopWriter = async () => {
    if (!writer) return;
    writer.stop = true;
    await writer.done;
    writer = undefined;
  };

  /** The point's records: an unbroken prefix holding every record acknowledged before its capture, none sent after. */
  const checkPoint = async (p: Point) => {
    const s = await store();
    const manifest = await s.getPoint(repId, p.id);
    const { prefix, problems } = checkRecords(await s.readRange(manifest, 'disk0', 0, (sentAt.length + 16) * RECORD_BYTES));
    const captured = Date.parse(p.capturedAt);
    const acked = ackedAt.filter((t) => t < captured).length;
    const sent = sentAt.filter((t) => t <= captured).length;
    return { prefix, problems, acked, sent };
  };
  /** The point restored whole equals the disk image (nothing is writing). */
  const equalsDisk = async (p: Point) => {
    const s = await store();
    return (await s.readRange(await s.getPoint(repId, p.id), 'disk0', 0, SIZE)).equals(await readFile(image));
  };

  beforeAll(async () => {
    sites = await createTwoSites();
    dir = await mkdtemp(join(tmpdir(), 'orch-link-faults-'));
    // Health is turned into alerts every 2 s (default 30 s), so the alert shows within seconds of crossing the threshold.
    const vault = await startRecoveryVault(sites, dir, { policy: { crashIntervalSeconds: 2, rpoThresholdSeconds: RPO_THRESHOLD_SECONDS }, env: { REFUGE_MONITOR_INTERVAL_SECONDS: '2' } });
    const { url } = vault;
    api = vault.api;
    const replicatorRegistration = await writeRegistration(api, url, join(dir, 'replicator-registration.json'));
    const agentRegistration = await writeRegistration(api, url, join(dir, 'agent-registration.json'));
    const refuge = (ns: string, credentials: string, args: string[], log: string) => sites.spawnIn(ns, process.execPath, [bin, '--credentials', credentials, '--vault', 'demo', ...args], join(dir, log), { REFUGE_LOG_LEVEL: 'info' });

    // At recovery, beside the vault: the replicator agents ship to (its counters are what crossed the link).
    refuge(sites.recovery, replicatorRegistration, ['replicator', '--site', 'recovery', '--listen', `${sites.recoveryService}:0`, '--state-dir', join(dir, 'replicator')], 'replicator.log');
    await waitFor(async () => (await api<Replicators>('GET', '/vaults/demo/replicators')).items.some((i) => i.site === 'recovery' && i.live), 60_000, 'the recovery replicator registering');
    // At primary: the agent serving the disk over NBD.
    image = join(dir, 'disk0.raw');
    await writeFile(image, '');
    await truncate(image, SIZE);
    refuge(sites.primary, agentRegistration, ['agent', '--site', 'primary', '--name', 'vm1', '--disk', `disk0=${image}`, '--capture', 'cdp', '--state-dir', join(dir, 'agent'), '--heartbeat', '1s'], 'agent.log');
    await waitFor(async () => (await api<{ items: unknown[] }>('GET', '/vaults/demo/machines')).items.length === 1, 60_000, 'the agent registering');
    repId = (await api<{ id: string }>('POST', '/vaults/demo/replications', { machine: 'vm1', policy: 'default', targetSite: 'recovery' })).id;
    await waitFor(async () => (await api<RepView>('GET', '/vaults/demo/replications/vm1')).state === 'protected', 120_000, 'the first point');
    await waitFor(async () => ((await counters())?.pointsCommitted ?? 0) >= 1, 30_000, 'the recovery replicator committing the first point');
    nbd = await RawNbdClient.attach(join(dir, 'agent', 'nbd', 'disk0.sock'));
  }, 300_000);

  afterAll(async () => {
    if (writer) writer.stop = true;
    await writer?.done.catch(() => undefined);
    nbd?.close();
    await sites?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('a) with the link slow and lossy, points keep coming and each holds exactly the records written before it', async () => {
    await sites.degrade(LINK);
    const goodputKbit = await linkGoodputKbit(sites, dir, 1 * MiB);
    const started = Date.now();
    const firstRecord = sentAt.length;
    startWriter();
    await sleep(DEGRADED_SECONDS * 1000);
    await stopWriter();
    // The point after the last record, shipped over the same degraded link, equals the disk byte for byte.
    const last = await pointAfter(ackedAt.at(-1) as number, 120_000, 'a point after the last record, over the degraded link');
    const seconds = (Date.now() - started) / 1000;
    const { packets, dropped } = await sites.restore();
    expect(dropped).toBeGreaterThan(0); // the link did lose packets
    const during = (await points()).filter((p) => Date.parse(p.capturedAt) > started && Date.parse(p.capturedAt) <= Date.parse(last.capturedAt));
    expect(during.length).toBeGreaterThanOrEqual(4);
    for (const p of during) {
      const { prefix, problems, acked, sent } = await checkPoint(p);
      expect(problems, `point ${p.id}`).toEqual([]);
      expect(prefix, `point ${p.id} holds every record acknowledged before ${p.capturedAt}`).toBeGreaterThanOrEqual(acked);
      expect(prefix, `point ${p.id} holds no record sent after ${p.capturedAt}`).toBeLessThanOrEqual(sent);
    }
    expect(await equalsDisk(last)).toBe(true);
    phaseA = { points: during, last, goodputKbit, packets, dropped, records: sentAt.length - firstRecord, seconds };
    figure('R2', {
      phase: 'slow and lossy link',
      link: `${LINK.rateKbit} kbit/s tbf each way, ${LINK.lossPercent}% random drop each way`,
      goodputKbit,
      packets,
      dropped,
      lossPercent: Math.round((1000 * dropped) / packets) / 10,
      seconds: Math.round(seconds),
      records: phaseA.records,
      points: during.length,
      lastPointLagSeconds: (Date.parse(last.committedAt) - Date.parse(last.capturedAt)) / 1000,
    });
  }, 240_000);

  it('b) with the link cut, the vault raises the RPO alert for the replication and its health leaves normal', async () => {
    expect(phaseA).toBeDefined();
    // Before the cut: nothing is pending, no RPO alert is active, and the replicator's counters include everything.
    await waitFor(async () => (await api<{ items: Alert[] }>('GET', '/vaults/demo/alerts?state=active&kind=rpo-over-threshold')).items.length === 0, 60_000, 'no active RPO alert before the cut');
    const settled = Date.parse((phaseA as { last: Point }).last.committedAt);
    let base: Counters | undefined;
    await waitFor(async () => (base = await counters(settled)) !== undefined, 30_000, 'the replicator reporting after the last point');
    const baseline = base as Counters;
    await sites.cut();
    // Taken once the cut is in place: a point captured while the cut was being set up may still cross.
    const at = Date.now();
    const firstRecord = sentAt.length;
    startWriter();
    let alert: Alert | undefined;
    await waitFor(async () => {
      alert = (await api<{ items: Alert[] }>('GET', '/vaults/demo/alerts?state=active&kind=rpo-over-threshold')).items.find((a) => a.subject === 'vm1');
      return alert !== undefined;
    }, CUT_SECONDS * 1000, 'the RPO alert while the link is cut');
    const raised = alert as Alert;
    expect(Date.parse(raised.firstAt)).toBeGreaterThan(at);
    expect(raised.severity).toBe('warning');
    expect(raised.message).toMatch(new RegExp(`over the policy's ${RPO_THRESHOLD_SECONDS} s`));
    const rep = await api<RepView>('GET', '/vaults/demo/replications/vm1');
    expect(['warning', 'critical']).toContain(rep.health);
    expect(rep.healthErrors.map((e) => e.code)).toContain('rpo-over-threshold');
    await sleep(Math.max(0, at + CUT_SECONDS * 1000 - Date.now()));
    await stopWriter();
    // Nothing crossed: no point was made while cut.
    expect((await points()).filter((p) => Date.parse(p.capturedAt) > at)).toEqual([]);
    cut = { at, baselineWire: baseline.wireBytesReceived, baselineBytes: baseline.bytesReceived, firstRecord, records: sentAt.length - firstRecord, alert: raised };
    const latest = (await points()).at(-1) as Point;
    figure('R2', {
      phase: 'link cut',
      cutSeconds: CUT_SECONDS,
      rpoThresholdSeconds: RPO_THRESHOLD_SECONDS,
      alertAfterCutSeconds: (Date.parse(raised.firstAt) - at) / 1000,
      rpoAtAlertSeconds: (Date.parse(raised.firstAt) - Date.parse(latest.capturedAt)) / 1000,
      alertMessage: raised.message,
      health: rep.health,
      recordsWhileCut: cut.records,
    });
  }, CUT_SECONDS * 1000 + 120_000);

  it('c) with the link back, the agent catches up by itself, ships about what was written while cut, and the alert resolves', async () => {
    expect(cut).toBeDefined();
    const c = cut as NonNullable<typeof cut>;
    const reconnectedAt = Date.now();
    await sites.reconnect();
    caughtUp = await pointAfter(ackedAt.at(-1) as number, 120_000, 'a point after the records written while cut');
    const { prefix, problems } = await checkPoint(caughtUp);
    expect(problems).toEqual([]);
    expect(prefix).toBe(sentAt.length);
    expect(await equalsDisk(caughtUp)).toBe(true);
    const committedAt = Date.parse(caughtUp.committedAt);

    await waitFor(async () => (await api<Alert>('GET', `/vaults/demo/alerts/${c.alert.id}`)).state === 'resolved', 60_000, 'the RPO alert resolving');
    await waitFor(async () => (await api<RepView>('GET', '/vaults/demo/replications/vm1')).health === 'normal', 60_000, 'health back to normal');

    // What crossed the link after it came back: the records written while cut (one 4 KiB block each), at most
    // 1.2x of them plus one chunk (a chunk written partly before the cut may travel whole), never the disk again.
    const written = c.records * RECORD_BYTES;
    let after: Counters | undefined;
    await waitFor(async () => (after = await counters(committedAt)) !== undefined, 30_000, 'the replicator reporting the catch-up');
    const wire = (after as Counters).wireBytesReceived - c.baselineWire;
    const chunkBytes = (after as Counters).bytesReceived - c.baselineBytes;
    expect(wire).toBeGreaterThanOrEqual(written * 0.9); // records are random: they do not compress
    expect(wire).toBeLessThanOrEqual(1.2 * written + DEFAULT_CHUNK_SIZE);
    expect(wire).toBeLessThan(SIZE / 4);
    figure('R2', {
      phase: 'link back',
      writtenWhileCutBytes: written,
      wireBytesAfterReconnect: wire,
      chunkBytesAfterReconnect: chunkBytes,
      ratio: Math.round((100 * wire) / written) / 100,
      catchUpSeconds: (committedAt - reconnectedAt) / 1000,
    });
  }, 240_000);

  it('d) with the link cut in the middle of an upload, the agent restarts it on fresh connections once the link is back; the disk arrives whole', async () => {
    expect(caughtUp).toBeDefined();
    let base: Counters | undefined;
    await waitFor(async () => (base = await counters(Date.parse((caughtUp as Point).committedAt))) !== undefined, 30_000, 'the replicator reporting');
    await sites.degrade(LINK);
    const firstRecord = sentAt.length;
    // In writes of 64 records (256 KiB), so that the burst is seldom split between two cuts: a chunk shipped by
    // a cut that is then abandoned and written again travels twice.
    for (let i = 0; i < BURST_RECORDS; i += 64) {
      const n = sentAt.length;
      const now = Date.now();
      nbd.request(NBD.cmd.write, BigInt(n + 1), n * RECORD_BYTES, 64 * RECORD_BYTES, 0, Buffer.concat(Array.from({ length: 64 }, (_, k) => recordBlock(n + k))));
      for (let k = 0; k < 64; k++) sentAt.push(now);
      expect((await nbd.reply()).error).toBe(0);
      const acked = Date.now();
      for (let k = 0; k < 64; k++) ackedAt.push(acked);
    }
    // The agent reports (heartbeats) that it is shipping the burst and has not finished: the link goes down now.
    await waitFor(async () => {
      const p = (await api<RepView>('GET', '/vaults/demo/replications/vm1')).progress;
      return p?.phase === 'shipping' && p.doneBytes > 0 && p.pendingBytes > 0;
    }, 60_000, 'the agent shipping the burst');
    await sites.cut();
    await sleep(MID_UPLOAD_CUT_SECONDS * 1000);
    const reconnectedAt = Date.now();
    await sites.reconnect(); // still slow and lossy
    const point = await pointAfter(ackedAt.at(-1) as number, 120_000, 'a point holding the burst');
    const { packets, dropped } = await sites.restore();
    expect(await equalsDisk(point)).toBe(true);
    expect(checkRecords((await readFile(image)).subarray(0, (sentAt.length + 16) * RECORD_BYTES))).toEqual({ prefix: sentAt.length, problems: [] });
    // The upload stuck on connections from before the cut was restarted as soon as the vault answered again.
    const restarts = (await readFile(join(dir, 'agent.log'), 'utf8')).split('\n').filter((l) => l.includes('restarting the upload in flight')).map((l) => JSON.parse(l) as { time: number });
    expect(restarts.filter((r) => r.time >= reconnectedAt).length).toBeGreaterThanOrEqual(1);
    const written = (sentAt.length - firstRecord) * RECORD_BYTES;
    let after: Counters | undefined;
    await waitFor(async () => (after = await counters(Date.parse(point.committedAt))) !== undefined, 30_000, 'the replicator reporting the burst');
    const wire = (after as Counters).wireBytesReceived - (base as Counters).wireBytesReceived;
    expect(wire).toBeLessThanOrEqual(1.2 * written + DEFAULT_CHUNK_SIZE);
    figure('R2', {
      phase: 'link cut mid-upload, back slow and lossy',
      burstBytes: written,
      cutSeconds: MID_UPLOAD_CUT_SECONDS,
      wireBytes: wire,
      ratio: Math.round((100 * wire) / written) / 100,
      restartAfterReconnectSeconds: ((restarts.find((r) => r.time >= reconnectedAt) as { time: number }).time - reconnectedAt) / 1000,
      catchUpSeconds: (Date.parse(point.committedAt) - reconnectedAt) / 1000,
      packets,
      dropped,
    });
  }, 240_000);
});
