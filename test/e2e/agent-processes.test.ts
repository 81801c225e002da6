import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MiB, startAgentFixture, waitFor, type AgentFixture } from '../helpers/agent/agent-fixture.js';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..', '..');
const SIZE = 32 * MiB;

interface LogLine {
  msg?: string;
  tracking?: Record<string, string>;
  readBytes?: number;
  wireBytes?: number;
  err?: unknown;
  point?: string;
}

/**
 * The real processes: `refuge replicator` (standalone, for site recovery) and `refuge agent --capture cdp`, against a
 * vault; each registers itself with a one-time key and uses mutual TLS (the replicator serves HTTPS). The agent is killed with SIGKILL while a write it tracked is unshipped (the replicator is frozen with
 * SIGSTOP, so nothing can be committed meanwhile). The restarted agent finds the write in its write-intent log,
 * reads only that region (not the disk) and ships it through the standalone replicator; the point restores to the
 * image's bytes.
 */
describe('agent and standalone replicator processes: kill -9 of the agent resumes without a full resync', () => {
  let f: AgentFixture;
  const children: ChildProcess[] = [];
  let image: string;
  let agentLog: string;
  /** Registration files (one-time keys) for the agent and the replicator, as `refuge agent key create --write` saves them. */
  let agentRegistration: string;
  let replicatorRegistration: string;

  const refuge = (credentials: string, args: string[], log: string) => {
    const child = spawn(process.execPath, [join(root, 'bin', 'refuge.js'), '--credentials', credentials, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, REFUGE_LOG_LEVEL: 'info' },
    });
    const out = createWriteStream(log, { flags: 'a' });
    child.stdout?.pipe(out);
    child.stderr?.pipe(out);
    children.push(child);
    return child;
  };
  // The first run registers (a client certificate in the state folder); the restarted agent reuses it.
  const startAgent = () =>
    refuge(agentRegistration, ['agent', '--site', 'primary', '--name', 'vm1', '--disk', `disk0=${image}`, '--capture', 'cdp', '--state-dir', join(f.dir, 'agent'), '--heartbeat', '1s'], agentLog);
  const logLines = async (): Promise<LogLine[]> =>
    (await readFile(agentLog, 'utf8').catch(() => '')).split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as LogLine);
  const exited = (c: ChildProcess) => new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', () => r())));

  beforeAll(async () => {
    f = await startAgentFixture('ragproc-');
    image = join(f.dir, 'disk0.raw');
    agentLog = join(f.dir, 'agent.log');
    agentRegistration = join(f.dir, 'agent-registration.json');
    await writeFile(agentRegistration, JSON.stringify(await f.registrationFile()), { mode: 0o600 });
    replicatorRegistration = join(f.dir, 'replicator-registration.json');
    await writeFile(replicatorRegistration, JSON.stringify(await f.registrationFile()), { mode: 0o600 });
    const disk = Buffer.alloc(SIZE);
    randomBytes(4 * MiB).copy(disk, 2 * MiB);
    await writeFile(image, disk);
  });
  afterAll(async () => {
    for (const c of children) {
      if (c.signalCode === 'SIGSTOP' || c.exitCode === null) c.kill('SIGCONT');
      c.kill('SIGKILL');
      await exited(c);
    }
    await f.close();
  });

  it('seeds through the standalone replicator, survives SIGKILL with a tracked write pending, and ships only that write', async () => {
    const replicator = refuge(replicatorRegistration, ['replicator', '--site', 'recovery', '--state-dir', join(f.dir, 'replicator')], join(f.dir, 'replicator.log'));
    await waitFor(async () => (await f.api<{ items: unknown[] }>('GET', '/vaults/demo/replicators')).items.length === 1, 30_000, 'the replicator registering');
    let agent = startAgent();
    const rep = await f.enable();
    const seeded = await f.pointAfter(new Date(0), 60_000);
    expect((await f.restore(rep, seeded.id)).equals(await readFile(image))).toBe(true);

    // Nothing can be committed from here on. Stopped just after a commit was answered, so that (almost always) no
    // commit is under way; one that is lands once the replicator resumes, with the agent dead (see below).
    const committedSoFar = (await logLines()).filter((l) => l.msg === 'recovery point committed').length;
    await waitFor(async () => (await logLines()).filter((l) => l.msg === 'recovery point committed').length > committedSoFar, 30_000, 'the next point committed', 10);
    replicator.kill('SIGSTOP');
    await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 20971520 65536', `nbd:unix:${join(f.dir, 'agent', 'nbd', 'disk0.sock')}`]);
    agent.kill('SIGKILL');
    await exited(agent);
    replicator.kill('SIGCONT');

    const restartedAt = new Date();
    agent = startAgent();
    const point = await f.pointAfter(restartedAt, 60_000);
    expect((await f.restore(rep, point.id)).equals(await readFile(image))).toBe(true);
    expect((await readFile(image)).subarray(20 * MiB, 20 * MiB + 65536).equals(Buffer.alloc(65536, 0x5a))).toBe(true);

    const lines = await logLines();
    const starts = lines.filter((l) => l.msg === 'cdp capture serving disks over NBD');
    expect(starts.map((l) => l.tracking?.disk0)).toEqual(['lost', 'intent-log']); // first run knew nothing; the second had the log
    const committed = lines.filter((l) => l.msg === 'recovery point committed');
    const afterRestart = committed.find((l) => l.point === point.id);
    // A commit the agent sent just before the replicator was stopped lands once it resumes, with the agent dead: the
    // restarted agent sends it again first (answered as a replay) and continues from that point with its log
    // (sent-commit.ts), rather than comparing every chunk of the disk.
    const restartedLines = lines.slice(lines.indexOf(starts[1] as (typeof lines)[number]));
    // On failure, what the restarted agent said (why it compared every chunk) is in the message.
    const said = JSON.stringify(restartedLines.filter((l) => l.msg !== 'recovery point committed').slice(0, 30));
    expect(afterRestart?.readBytes, said).toBe(MiB); // the one logged region, not the 32 MiB disk
    expect(afterRestart?.wireBytes).toBeLessThan(64 * 1024); // only the write travels (a patch of 0x5a bytes compresses)

    type Replicators = { items: { replications: { replicationId: string; pointsCommitted: number }[] }[] };
    const reported = async () => (await f.api<Replicators>('GET', '/vaults/demo/replicators')).items[0]?.replications[0]?.pointsCommitted ?? 0;
    await waitFor(async () => (await reported()) >= 2, 15_000, 'the replicator reporting its commits to the vault');
  });
});
