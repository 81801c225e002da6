import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MiB, startAgentFixture, waitFor, type AgentFixture } from '../helpers/agent/agent-fixture.js';
import { NBD, RawNbdClient } from '../helpers/agent/raw-nbd-client.js';

const root = join(import.meta.dirname, '..', '..');

/**
 * The causal writer, a process of its own (so its pace does not depend on the test's event loop, which also runs
 * the vault): a minimal NBD client (fixed newstyle handshake, OPT_GO, then WRITE requests) on two sockets that
 * writes "SEQ n" to the first disk, waits for the reply, then to the second, then n + 1 to the first, and so on.
 */
const CAUSAL_WRITER = `
const net = require('node:net');
const [a, b, offset] = [process.argv[1], process.argv[2], Number(process.argv[3])];
function attach(path) {
  return new Promise((resolve, reject) => {
    const s = net.createConnection(path);
    let buf = Buffer.alloc(0), want = 0, waiter;
    const take = (n) => new Promise((r) => { want = n; waiter = r; pump(); });
    const pump = () => { if (waiter && buf.length >= want) { const out = buf.subarray(0, want); buf = buf.subarray(want); const w = waiter; waiter = undefined; w(out); } };
    s.on('data', (d) => { buf = Buffer.concat([buf, d]); pump(); });
    s.on('error', reject);
    s.on('connect', async () => {
      await take(18);
      const opt = Buffer.alloc(4 + 8 + 4 + 4 + 4 + 2);
      opt.writeUInt32BE(3, 0); opt.write('IHAVEOPT', 4); opt.writeUInt32BE(7, 12); opt.writeUInt32BE(6, 16);
      s.write(opt);
      for (;;) { const h = await take(20); const len = h.readUInt32BE(16); if (len) await take(len); if (h.readUInt32BE(12) === 1) break; }
      let handle = 0n;
      resolve(async (data) => {
        const r = Buffer.alloc(28); r.writeUInt32BE(0x25609513, 0); r.writeUInt16BE(1, 6); r.writeBigUInt64BE(++handle, 8);
        r.writeBigUInt64BE(BigInt(offset), 16); r.writeUInt32BE(data.length, 24);
        s.write(Buffer.concat([r, data]));
        const reply = await take(16);
        if (reply.readUInt32BE(4) !== 0) throw new Error('write failed');
      });
    });
  });
}
(async () => {
  const [wa, wb] = [await attach(a), await attach(b)];
  const block = Buffer.alloc(4096);
  for (let n = 1; ; n++) {
    block.fill(0); block.write('SEQ ' + String(n).padStart(10, '0') + '\\n');
    await wa(block);
    await wb(block);
  }
})().catch((e) => { console.error(e); process.exit(1); });`;
const SIZE = 16 * MiB;
/** Where the causal writer keeps its sequence number on each disk (one 4 KiB block, its own chunk). */
const SEQ_OFFSET = 8 * MiB;

interface CutView {
  id: string;
  state: 'open' | 'complete' | 'failed';
  reason: string | null;
  members: { replication: string; phase: string; pointId: string | null; error: string | null }[];
}
interface PointView {
  id: string;
  consistency: string;
  groupCutId: string | null;
}

/**
 * Issue 4, must show 2: a consistency group of two machines, each replicated by its own `refuge agent --capture cdp`
 * process, against a real vault. A writer makes the two disks causally dependent: it writes sequence number n to
 * machine A's disk, waits for the acknowledgement, then writes n to machine B's disk, then n + 1 to A, and so on.
 * In any instant that both machines share, A holds n and B holds n or n - 1; separate cuts taken a moment apart
 * break that (checked: without the agents holding writes at the barrier, the first cut restored A at 1118 and B at
 * 1169). The group cuts, restored from the replica store, must keep it.
 *
 * Failures: B's pre-cut hook fails during a cut (the cut fails, no point is marked as a group point, the next cut
 * succeeds); A is killed with SIGKILL after the barrier while it ships its point (B's point of that cut exists as
 * an ordinary point; nothing is marked with the failed cut), and after A restarts a later cut succeeds.
 */
describe('consistency group: one cut across two agent processes, with failures', () => {
  let f: AgentFixture;
  const children = new Map<string, ChildProcess>();
  let hookFlag: string;
  const images = { vm1: '', vm2: '' };
  const clients: Partial<Record<'vm1' | 'vm2', RawNbdClient>> = {};
  let handle = 0n;

  const startAgent = (machine: 'vm1' | 'vm2') => {
    const extra = machine === 'vm1'
      ? ['--bandwidth', '1MB/s'] // A ships slowly, so the test can kill it mid-shipping
      : ['--app-hook', `if [ -n "$REFUGE_GROUP_CUT" ] && [ -e ${hookFlag} ]; then echo "database refused to quiesce" >&2; exit 3; fi`];
    const args = ['--credentials', join(f.dir, `${machine}-registration.json`), '--vault', 'demo', 'agent', '--site', 'primary', '--name', machine, '--disk', `disk0=${images[machine]}`,
      '--capture', 'cdp', '--state-dir', join(f.dir, `agent-${machine}`), '--heartbeat', '1s', '--hook-timeout', '10s', ...extra];
    const child = spawn(process.execPath, [join(root, 'bin', 'refuge.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, REFUGE_LOG_LEVEL: 'info' } });
    const out = createWriteStream(join(f.dir, `agent-${machine}.log`), { flags: 'a' });
    child.stdout?.pipe(out);
    child.stderr?.pipe(out);
    children.set(machine, child);
    return child;
  };
  const socket = (machine: 'vm1' | 'vm2') => join(f.dir, `agent-${machine}`, 'nbd', 'disk0.sock');
  const write = async (machine: 'vm1' | 'vm2', offset: number, data: Buffer) => {
    const c = (clients[machine] ??= await RawNbdClient.attach(socket(machine)));
    c.request(NBD.cmd.write, ++handle, offset, data.length, 0, data);
    const r = await c.reply();
    if (r.error !== 0) throw new Error(`write to ${machine} failed: ${r.error}`);
  };
  const seqOf = (disk: Buffer) => Number(/^SEQ (\d{10})/.exec(disk.subarray(SEQ_OFFSET, SEQ_OFFSET + 16).toString())?.[1] ?? -1);
  let writer: ChildProcess | undefined;
  const startWriter = () => {
    writer = spawn(process.execPath, ['-e', CAUSAL_WRITER, socket('vm1'), socket('vm2'), String(SEQ_OFFSET)], { stdio: ['ignore', 'ignore', 'inherit'] });
  };
  const stopWriter = async () => {
    const w = writer;
    if (!w || w.exitCode !== null || w.signalCode !== null) return;
    const exited = new Promise((r) => w.once('exit', r));
    w.kill('SIGKILL');
    await exited;
  };

  const openCut = (body: Record<string, number> = {}) => f.api<CutView>('POST', '/vaults/demo/consistency-groups/g1/cuts', body);
  const cutNow = (id: string) => f.api<CutView>('GET', `/vaults/demo/consistency-groups/g1/cuts/${id}`);
  const resolved = async (id: string, timeoutMs = 60_000) => {
    await waitFor(async () => (await cutNow(id)).state !== 'open', timeoutMs, `group cut ${id} resolving`);
    return cutNow(id);
  };
  const points = async (machine: string) => (await f.api<{ items: PointView[] }>('GET', `/vaults/demo/replications/${machine}/points?limit=1000`)).items;
  const replicationIds = new Map<string, string>();

  beforeAll(async () => {
    f = await startAgentFixture('ragcg-', { groupCuts: { minIntervalSeconds: 0 } }); // cuts only when the test asks
    hookFlag = join(f.dir, 'refuse-quiesce');
    // One registration file (one-time key) per agent: each registers on its first run and keeps its certificate.
    for (const m of ['vm1', 'vm2']) await writeFile(join(f.dir, `${m}-registration.json`), JSON.stringify(await f.registrationFile()), { mode: 0o600 });
    for (const m of ['vm1', 'vm2'] as const) {
      images[m] = join(f.dir, `${m}.raw`);
      const disk = Buffer.alloc(SIZE);
      randomBytes(MiB).copy(disk, 2 * MiB);
      await writeFile(images[m], disk);
    }
    startAgent('vm1');
    startAgent('vm2');
    await f.api('POST', '/vaults/demo/consistency-groups', { name: 'g1' });
    // Points only at group cuts (B's are app-consistent: it has a hook), not on a crash schedule.
    await f.api('POST', '/vaults/demo/policies', { name: 'grouped', crashIntervalSeconds: 86_400 });
    await waitFor(async () => (await f.api<{ items: unknown[] }>('GET', '/vaults/demo/machines')).items.length === 2, 30_000, 'both agents registering');
    for (const m of ['vm1', 'vm2']) {
      const r = await f.api<{ id: string }>('POST', '/vaults/demo/replications', { machine: m, policy: 'grouped', targetSite: 'recovery', group: 'g1' });
      replicationIds.set(m, r.id);
    }
    await waitFor(async () => (await points('vm1')).length > 0 && (await points('vm2')).length > 0, 90_000, 'both machines seeded');
    startWriter();
  });

  afterAll(async () => {
    await stopWriter();
    for (const c of Object.values(clients)) c.close();
    for (const c of children.values()) {
      if (c.exitCode === null && c.signalCode === null) {
        const exited = new Promise((r) => c.once('exit', r));
        c.kill('SIGKILL');
        await exited;
      }
    }
    await f.close();
  });

  it('a member whose hook fails fails the cut: no group point; the next cut is one instant on both machines', async () => {
    await writeFile(hookFlag, '');
    const failedCut = await resolved((await openCut()).id);
    expect(failedCut.state).toBe('failed');
    expect(failedCut.reason).toContain('database refused to quiesce');
    expect(failedCut.members.find((m) => m.replication === 'vm2')?.phase).toBe('failed');

    await rm(hookFlag);
    // Several cuts while the writer runs, each one instant: restored, A holds n and B holds n or n - 1.
    const pointOf = (c: CutView, m: string) => c.members.find((x) => x.replication === m)?.pointId as string;
    const cuts: CutView[] = [];
    for (let i = 0; i < 4; i++) {
      const cut = await resolved((await openCut()).id);
      expect(cut.state).toBe('complete');
      const a = seqOf(await f.restore(replicationIds.get('vm1') as string, pointOf(cut, 'vm1')));
      const b = seqOf(await f.restore(replicationIds.get('vm2') as string, pointOf(cut, 'vm2')));
      expect({ cut: i, a, b, oneInstant: a > 10 && (b === a || b === a - 1) }).toEqual({ cut: i, a, b, oneInstant: true });
      cuts.push(cut);
    }
    const marked = [...(await points('vm1')), ...(await points('vm2'))].filter((p) => p.groupCutId !== null);
    expect(marked.map((p) => p.id).sort()).toEqual(cuts.flatMap((c) => c.members.map((m) => m.pointId)).sort()); // exactly these cuts' points
    for (const c of cuts) expect(marked.filter((p) => p.groupCutId === c.id).length).toBe(2);
    expect(marked.some((p) => p.groupCutId === failedCut.id)).toBe(false);
    expect((await points('vm2')).filter((p) => p.groupCutId !== null).every((p) => p.consistency === 'app')).toBe(true); // B's hook quiesced them

    const events = await f.api<{ items: { type: string; message: string }[] }>('GET', '/vaults/demo/events?limit=200');
    expect(events.items.some((e) => e.type === 'group-cut.failed' && e.message.includes('database refused to quiesce'))).toBe(true);
    expect(events.items.some((e) => e.type === 'agent.app-consistency-failed')).toBe(true);
    expect(events.items.some((e) => e.type === 'group-cut.completed')).toBe(true);
  });

  it('an agent killed during the cut leaves no partial group point; after it restarts a later cut succeeds', async () => {
    await stopWriter();
    await write('vm1', 4 * MiB, randomBytes(4 * MiB)); // A ships 4 MiB at 1 MB/s: the test kills it meanwhile
    const opened = await openCut({ commitSeconds: 10 });
    await waitFor(async () => {
      const c = await cutNow(opened.id);
      return c.members.find((m) => m.replication === 'vm2')?.phase === 'cut' && c.members.find((m) => m.replication === 'vm1')?.phase === 'paused';
    }, 30_000, 'B committed its point of the cut while A ships');
    const a = children.get('vm1') as ChildProcess;
    const exited = new Promise((r) => a.once('exit', r));
    a.kill('SIGKILL');
    await exited;
    clients.vm1?.close();
    delete clients.vm1;

    const failed = await resolved(opened.id);
    expect(failed.state).toBe('failed');
    const bPoint = failed.members.find((m) => m.replication === 'vm2')?.pointId;
    expect(bPoint).toBeTruthy();
    const bPoints = await points('vm2');
    expect(bPoints.find((p) => p.id === bPoint)?.groupCutId).toBeNull(); // B's point stays an ordinary point
    expect([...(await points('vm1')), ...bPoints].some((p) => p.groupCutId === failed.id)).toBe(false);

    startAgent('vm1');
    await waitFor(async () => {
      const c = await openCut().catch(() => undefined);
      if (!c) return false;
      const r = await resolved(c.id, 90_000);
      return r.state === 'complete';
    }, 180_000, 'a group cut completing after A restarted');
    const all = [...(await points('vm1')), ...(await points('vm2'))];
    const groups = new Set(all.map((p) => p.groupCutId).filter((g) => g !== null));
    expect(groups.size).toBe(5); // the completed cuts, each with both machines' points
    for (const g of groups) expect(all.filter((p) => p.groupCutId === g).length).toBe(2);
  });
});
