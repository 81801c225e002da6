import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Median of numbers (the middle one, or the mean of the two middle ones). */
export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** Starts a child process and resolves once its stdout shows `ready` (its whole stdout is kept). */
export function startUntil(command: string, args: string[], ready: RegExp, env: NodeJS.ProcessEnv = process.env): Promise<ChildProcess & { output: () => string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    let out = '';
    let err = '';
    const withOutput = Object.assign(child, { output: () => out });
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (ready.test(out)) resolve(withOutput);
    });
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    child.once('exit', (code) => reject(new Error(`${command} exited (${code}) before it was ready: ${err.slice(-500)}`)));
  });
}

/** Sends SIGTERM and waits for the exit (SIGKILL after 10 s). */
export async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(t);
}

/** Peak resident memory of a running process (VmHWM), in bytes. */
export async function peakRss(pid: number): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const m = /VmHWM:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8').catch(() => ''));
  return Number(m?.[1] ?? 0) * 1024;
}

/** CPU seconds (user + system, every thread) a process has used so far, from /proc (0 when it is gone). */
export async function cpuSeconds(pid: number): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11] ?? 0) + Number(fields[12] ?? 0)) / 100; // utime, stime in clock ticks (USER_HZ 100)
}

const pairs = (kvs: string[]) => Object.fromEntries(kvs.filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));

/**
 * How packaging/systemd/refuge-agent@.service runs the agent: its `Environment=` settings and node's flags. The
 * benchmarks run the agent (or its NBD export) the same way, so they measure it as deployed.
 */
export async function unitLaunch(): Promise<{ env: Record<string, string>; nodeFlags: string[] }> {
  const unit = await readFile(join(import.meta.dirname, '..', '..', 'packaging', 'systemd', 'refuge-agent@.service'), 'utf8');
  const env = pairs(unit.split('\n').filter((l) => l.startsWith('Environment=')).flatMap((l) => l.slice('Environment='.length).trim().split(/\s+/)));
  const exec = /^ExecStart=.*?\/usr\/bin\/node((?:\s+--\S+)*)\s+\S*refuge\.js agent/m.exec(unit);
  if (!exec) throw new Error('no `node ... refuge.js agent` in the unit\'s ExecStart');
  return { env, nodeFlags: (exec[1] ?? '').trim().split(/\s+/).filter(Boolean) };
}
