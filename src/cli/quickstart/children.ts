import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { RefugeError } from '../../core/errors.js';
import { packageRoot } from '../../core/package-root.js';

/** Starts `refuge ARGS` as a child process whose stdout and stderr go to `logFile`. */
export function spawnRefuge(args: string[], logFile: string): ChildProcess & { stdoutText: () => string } {
  const child = spawn(process.execPath, [join(packageRoot(), 'bin', 'refuge.js'), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, REFUGE_LOG_LEVEL: process.env.REFUGE_LOG_LEVEL ?? 'info' },
  });
  const log = createWriteStream(logFile, { flags: 'a' });
  let stdout = '';
  child.stdout?.on('data', (d: Buffer) => {
    stdout += d.toString();
    log.write(d);
  });
  child.stderr?.pipe(log);
  return Object.assign(child, { stdoutText: () => stdout });
}

/** Resolves with the first match of `pattern` in the child's stdout; rejects if the child exits first. */
export function waitForOutput(child: ChildProcess & { stdoutText: () => string }, pattern: RegExp, timeoutMs: number, logFile: string): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const m = pattern.exec(child.stdoutText());
      if (m) {
        cleanup();
        resolve(m);
      }
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(new RefugeError('unavailable', `refuge process exited (${code}) before it was ready; see ${logFile}`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new RefugeError('unavailable', `refuge process not ready within ${timeoutMs / 1000} s; see ${logFile}`));
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      child.stdout?.off('data', check);
      child.off('exit', onExit);
    };
    child.stdout?.on('data', check);
    child.on('exit', onExit);
    check();
  });
}

/** Stops a child with SIGTERM, then SIGKILL after a grace period. */
export async function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}
