import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CommandHook } from '../../../src/agent/hooks/app-hooks.js';
import { GuestAgentFreezeHook } from '../../../src/agent/hooks/guest-agent.js';
import { quiesce } from '../../../src/agent/hooks/hook-runner.js';

/**
 * A stand-in for qemu-ga on the VM's guest-agent socket (the tiny test guest does not run one): answers the QMP-like
 * commands the agent sends, one JSON object per line, and keeps the guest's freeze state. `mode` makes it misbehave
 * the ways a real guest agent can: hang on freeze, refuse it, or leave a stale reply queued before the sync.
 */
class FakeGuestAgent {
  frozen = false;
  readonly commands: string[] = [];
  mode: 'ok' | 'hang-freeze' | 'refuse-freeze' | 'stale-reply' = 'ok';
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();

  constructor(readonly path: string) {}

  async start(): Promise<void> {
    this.server = createServer((s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      if (this.mode === 'stale-reply') s.write('{"return": {}}\n'); // left over from an abandoned session
      let buffer = '';
      s.on('data', (d) => {
        buffer += d.toString();
        let nl: number;
        while ((nl = buffer.indexOf('\n')) >= 0) {
          const msg = JSON.parse(buffer.slice(0, nl)) as { execute: string; arguments?: { id?: number } };
          buffer = buffer.slice(nl + 1);
          this.commands.push(msg.execute);
          this.answer(s, msg);
        }
      });
    });
    await new Promise<void>((r) => this.server?.listen(this.path, r));
  }

  private answer(s: Socket, msg: { execute: string; arguments?: { id?: number } }): void {
    const reply = (o: unknown) => s.write(JSON.stringify(o) + '\n');
    switch (msg.execute) {
      case 'guest-sync':
        return void reply({ return: msg.arguments?.id });
      case 'guest-fsfreeze-freeze':
        if (this.mode === 'hang-freeze') {
          this.frozen = true; // froze, but the answer never comes
          return;
        }
        if (this.mode === 'refuse-freeze') return void reply({ error: { class: 'GenericError', desc: 'failed to freeze /data: Device or resource busy' } });
        this.frozen = true;
        return void reply({ return: 2 });
      case 'guest-fsfreeze-thaw':
        this.frozen = false;
        return void reply({ return: 2 });
      default:
        return void reply({ error: { class: 'CommandNotFound', desc: `unknown ${msg.execute}` } });
    }
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

const ctx = { machine: 'vm1', disks: ['disk0', 'disk1'] };

describe('app-consistency hooks', () => {
  let dir: string;
  let qga: FakeGuestAgent;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rhooks-'));
    qga = new FakeGuestAgent(join(dir, 'qga.sock'));
    await qga.start();
  });
  afterEach(async () => {
    await qga.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('freezes the guest through its guest agent, and thaws it after the cut', async () => {
    qga.mode = 'stale-reply';
    const q = await quiesce([new GuestAgentFreezeHook(qga.path)], ctx, 2000);
    expect(q.appConsistent).toBe(true);
    expect(qga.frozen).toBe(true);
    expect(await q.release()).toEqual([]);
    expect(qga.frozen).toBe(false);
    expect(qga.commands).toEqual(['guest-sync', 'guest-fsfreeze-freeze', 'guest-sync', 'guest-fsfreeze-thaw']);
  });

  it('a guest agent that hangs on freeze costs consistency, not availability: thawed at once, crash-consistent', async () => {
    qga.mode = 'hang-freeze';
    const q = await quiesce([new GuestAgentFreezeHook(qga.path)], ctx, 300);
    expect(q.appConsistent).toBe(false);
    expect(q.failures[0]).toMatch(/guest-fsfreeze-freeze: the guest agent did not answer in time/);
    expect(qga.frozen).toBe(false); // the half-done freeze was undone before the cut
    expect(qga.commands.at(-1)).toBe('guest-fsfreeze-thaw');
  });

  it('a refused freeze is reported with the guest agent error', async () => {
    qga.mode = 'refuse-freeze';
    const q = await quiesce([new GuestAgentFreezeHook(qga.path)], ctx, 2000);
    expect(q.appConsistent).toBe(false);
    expect(q.failures[0]).toContain('Device or resource busy');
  });

  it('a VM without a guest-agent socket needs no freeze', async () => {
    const q = await quiesce([new GuestAgentFreezeHook(join(dir, 'absent.sock'))], ctx, 2000);
    expect(q.appConsistent).toBe(true);
    expect(await q.release()).toEqual([]);
  });

  it('runs the command before and after the cut with the context in its environment', async () => {
    const log = join(dir, 'hook.log');
    const hook = new CommandHook(`echo "$REFUGE_HOOK_PHASE $REFUGE_MACHINE $REFUGE_DISKS $REFUGE_GROUP_CUT $REFUGE_CONSISTENCY" >> ${log}`);
    const q = await quiesce([hook, new GuestAgentFreezeHook(qga.path)], { ...ctx, groupCutId: 'gcut_1' }, 2000);
    expect(q.appConsistent).toBe(true);
    await q.release();
    expect((await readFile(log, 'utf8')).trim().split('\n').map((l) => l.trim())).toEqual(['pre vm1 disk0,disk1 gcut_1', 'post vm1 disk0,disk1 gcut_1 app']);
    expect(qga.frozen).toBe(false);
  });

  it('a failing command fails the point to crash-consistent, still runs post, and never reaches the later hooks', async () => {
    const log = join(dir, 'hook.log');
    const hook = new CommandHook(`echo "$REFUGE_HOOK_PHASE $REFUGE_CONSISTENCY" >> ${log}; [ "$REFUGE_HOOK_PHASE" = post ] || { echo 'app says no' >&2; exit 4; }`);
    const q = await quiesce([hook, new GuestAgentFreezeHook(qga.path)], ctx, 2000);
    expect(q.appConsistent).toBe(false);
    expect(q.failures[0]).toMatch(/exited with 4: app says no/);
    expect((await readFile(log, 'utf8')).trim().split('\n').map((l) => l.trim())).toEqual(['pre', 'post crash']);
    expect(qga.commands).toEqual([]); // never frozen
  });

  it('a command that hangs is killed with everything it started at the timeout', async () => {
    const pidFile = join(dir, 'sleeper.pid');
    const hook = new CommandHook(`if [ "$REFUGE_HOOK_PHASE" = pre ]; then sleep 60 & echo $! > ${pidFile}; wait; fi`);
    const q = await quiesce([hook], ctx, 300);
    expect(q.appConsistent).toBe(false);
    expect(q.failures[0]).toMatch(/timed out and was killed/);
    const pid = Number(await readFile(pidFile, 'utf8'));
    // Gone, or a zombie waiting for whoever adopted it to reap it (a container's init may never do that).
    const alive = async () => {
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
      return stat !== '' && stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
    };
    for (let i = 0; i < 50 && (await alive()); i++) await new Promise((r) => setTimeout(r, 20));
    expect(await alive()).toBe(false);
  });
});
