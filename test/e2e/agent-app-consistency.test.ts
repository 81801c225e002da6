import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GUEST_CMDLINE, ensureDemoGuest } from '../../src/fabric/demo-guest.js';
import { QemuProvider } from '../../src/fabric/qemu/qemu-provider.js';
import { MiB, startAgentFixture, waitFor, type AgentFixture } from '../helpers/agent/agent-fixture.js';
import { ackedRecords, checkRecords } from '../helpers/agent/records.js';

const root = join(import.meta.dirname, '..', '..');
const SIZE = 32 * MiB;

interface PointView {
  id: string;
  capturedAt: string;
  consistency: 'app' | 'crash';
}
interface EventView {
  type: string;
  message: string;
}

/**
 * App-consistent points end to end: `refuge agent --capture cdp --app-hook HOOK` serves a real qemu guest's disk
 * (the guest writes numbered records through it). The policy asks for an app-consistent point every few seconds.
 * The hook is what an operator would write for a VM without a guest agent: before the cut it pauses the VM through
 * QMP (nothing in flight), after the cut it resumes it; it logs the context the agent gives it. Then the hook is
 * made to fail, and to hang: each time the point falls back to crash-consistent with an event, the hook that hung
 * is killed at the timeout, the post hook resumes the guest, and the guest's disk never stops.
 */
describe('app-consistent points: a command hook around the cut, with a real guest', () => {
  let f: AgentFixture;
  let vm: QemuProvider;
  let agent: ChildProcess | undefined;
  const files = { log: '', fail: '', hang: '', hook: '' };

  const points = async () => (await f.api<{ items: PointView[] }>('GET', '/vaults/demo/replications/vm1/points?limit=1000')).items;
  const events = async () => (await f.api<{ items: EventView[] }>('GET', '/vaults/demo/events?type=agent.app-consistency-failed&limit=100')).items;
  const acked = async () => Math.max(-1, ...ackedRecords(await vm.console('guest')));
  const keepsWriting = async (what: string) => {
    const from = await acked();
    await waitFor(async () => (await acked()) >= from + 5, 120_000, `the guest acknowledging records after ${what}`);
  };

  beforeAll(async () => {
    f = await startAgentFixture('ragapp-');
    const image = join(f.dir, 'disk0.raw');
    await writeFile(image, '');
    await truncate(image, SIZE);
    vm = new QemuProvider({ workDir: join(f.dir, 'vm') });
    const qmp = join(f.dir, 'vm', 'guest', 'qmp.sock');
    Object.assign(files, { log: join(f.dir, 'hook.log'), fail: join(f.dir, 'fail'), hang: join(f.dir, 'hang'), hook: join(f.dir, 'hook.sh') });
    await writeFile(files.hook, [
      '#!/bin/sh',
      `echo "$(date +%s%N) $REFUGE_HOOK_PHASE $REFUGE_MACHINE $REFUGE_DISKS $REFUGE_CONSISTENCY" >> ${files.log}`,
      `qmp() { printf '{"execute":"qmp_capabilities"}\\n{"execute":"%s"}\\n' "$1" | socat -t 0.5 - UNIX-CONNECT:${qmp} > /dev/null; }`,
      'if [ "$REFUGE_HOOK_PHASE" = pre ]; then',
      '  qmp stop',
      `  if [ -e ${files.fail} ]; then echo "the database refused to quiesce" >&2; exit 2; fi`,
      `  if [ -e ${files.hang} ]; then sleep 600; fi`,
      'else',
      '  qmp cont',
      'fi',
    ].join('\n'), { mode: 0o755 });
    const credentials = join(f.dir, 'agent-registration.json');
    await writeFile(credentials, JSON.stringify(await f.registrationFile()), { mode: 0o600 });
    agent = spawn(process.execPath, [join(root, 'bin', 'refuge.js'), '--credentials', credentials, '--vault', 'demo', 'agent', '--site', 'primary', '--name', 'vm1',
      '--disk', `disk0=${image}`, '--capture', 'cdp', '--state-dir', join(f.dir, 'agent'), '--heartbeat', '1s', '--app-hook', files.hook, '--hook-timeout', '3s'],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, REFUGE_LOG_LEVEL: 'info' } });
    const out = createWriteStream(join(f.dir, 'agent.log'));
    agent.stdout?.pipe(out);
    agent.stderr?.pipe(out);
    await f.enable();
    await f.pointAfter(new Date(0), 60_000); // seeded
    // The API's floor for the app-consistent interval is a minute (production); the test asks for one every 4 s.
    await f.server.repos.db.updateTable('policies').set({ appIntervalSeconds: 4, crashIntervalSeconds: 2 }).execute();

    const guest = await ensureDemoGuest();
    await vm.start({
      name: 'guest',
      cpus: 1,
      memoryMiB: 256,
      disks: [{ path: `nbd+unix:///disk0?socket=${join(f.dir, 'agent', 'nbd', 'disk0.sock')}`, format: 'raw' }],
      boot: { kind: 'kernel', kernel: guest.kernel, initrd: guest.initrd, cmdline: `${GUEST_CMDLINE} refuge.workload=records refuge.records=6000` },
    });
    await waitFor(async () => (await acked()) >= 5, 120_000, 'the guest writing records');
  });

  afterAll(async () => {
    await vm?.delete('guest').catch(() => undefined);
    if (agent && agent.exitCode === null) {
      const exited = new Promise((r) => agent?.once('exit', r));
      agent.kill('SIGKILL');
      await exited;
    }
    await f?.close();
  });

  it('cuts app-consistent points between the pre and post hook, which get the context in their environment', async () => {
    const since = Date.now();
    await waitFor(async () => (await points()).filter((p) => p.consistency === 'app' && Date.parse(p.capturedAt) > since).length >= 2, 120_000, 'two app-consistent points');
    const lines = (await readFile(files.log, 'utf8')).trim().split('\n').map((l) => l.trim().split(' '));
    for (const p of (await points()).filter((x) => x.consistency === 'app')) {
      const cutNs = BigInt(Date.parse(p.capturedAt)) * 1_000_000n;
      const pre = lines.filter((l) => l[1] === 'pre' && BigInt(l[0] as string) <= cutNs).at(-1);
      const post = lines.find((l) => l[1] === 'post' && BigInt(l[0] as string) >= cutNs);
      expect(pre?.slice(1)).toEqual(['pre', 'vm1', 'disk0']);
      expect(post?.slice(1)).toEqual(['post', 'vm1', 'disk0', 'app']);
    }
    await keepsWriting('the app-consistent points');
  });

  it('a failing hook yields a crash-consistent point and an event; the post hook still resumes the guest', async () => {
    await writeFile(files.fail, '');
    await waitFor(async () => (await events()).some((e) => e.message.includes('the database refused to quiesce')), 60_000, 'the hook failure event');
    await rm(files.fail);
    expect((await readFile(files.log, 'utf8')).trim().split('\n').map((l) => l.trim()).some((l) => l.endsWith('post vm1 disk0 crash'))).toBe(true);
    await keepsWriting('the failed hook');
  });

  it('a hook that hangs is killed at the timeout: crash-consistent point, event, and the guest goes on', async () => {
    const before = (await points()).length;
    await writeFile(files.hang, '');
    await waitFor(async () => (await events()).some((e) => e.message.includes('timed out and was killed')), 60_000, 'the hook timeout event');
    await rm(files.hang);
    await keepsWriting('the hung hook');
    await waitFor(async () => (await points()).length > before + 1, 60_000, 'points after the hung hook');
    expect((await points()).some((p) => p.consistency === 'crash')).toBe(true);

    // The newest points of the run restore to an unbroken prefix of intact records (the last 4 KiB is the head).
    const rep = (await f.api<{ id: string }>('GET', '/vaults/demo/replications/vm1')).id;
    for (const p of (await points()).slice(0, 6)) expect(checkRecords((await f.restore(rep, p.id)).subarray(0, SIZE - 4096)).problems).toEqual([]);
  });
});
