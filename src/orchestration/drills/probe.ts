import { connect } from 'node:net';
import { RefugeError } from '../../core/errors.js';
import { sleep } from '../../core/durations.js';
import { run } from '../../core/processes.js';

/**
 * A drill's health probe against the test copy: a TCP connect, an HTTP GET (any 2xx/3xx, or `expectStatus`), or a
 * command (exit 0). `{machine}` and `{address}` in the host, URL or command are replaced by the test copy's name
 * and address. The probe is retried until it succeeds or `timeoutSeconds` pass (the copy needs time to boot).
 */
export type Probe =
  | { kind: 'tcp'; host: string; port: number; timeoutSeconds?: number }
  | { kind: 'http'; url: string; expectStatus?: number; timeoutSeconds?: number }
  | { kind: 'command'; command: string; timeoutSeconds?: number };

export interface ProbeTarget {
  machine: string;
  address: string;
  /** Extra environment for a command probe (the drill's context). */
  env: Record<string, string>;
}

export interface ProbeResult {
  ok: boolean;
  attempts: number;
  /** When the probe first succeeded, or when it gave up. */
  at: string;
  lastError: string | null;
}

const ATTEMPT_TIMEOUT_MS = 5000;
const RETRY_MS = 1000;
export const DEFAULT_PROBE_TIMEOUT_SECONDS = 300;

const fill = (text: string, t: ProbeTarget) => text.replaceAll('{machine}', t.machine).replaceAll('{address}', t.address);

/** One attempt; throws with the reason on failure. */
async function attempt(p: Probe, t: ProbeTarget, signal: AbortSignal): Promise<void> {
  switch (p.kind) {
    case 'tcp':
      return new Promise((resolve, reject) => {
        const socket = connect({ host: fill(p.host, t), port: p.port, timeout: ATTEMPT_TIMEOUT_MS, signal });
        socket.once('connect', () => {
          socket.destroy();
          resolve();
        });
        socket.once('timeout', () => {
          socket.destroy();
          reject(new Error(`no TCP connection to ${fill(p.host, t)}:${p.port} within ${ATTEMPT_TIMEOUT_MS} ms`));
        });
        socket.once('error', (err) => reject(new Error(`TCP ${fill(p.host, t)}:${p.port}: ${err.message}`)));
      });
    case 'http': {
      const url = fill(p.url, t);
      const res = await fetch(url, { redirect: 'manual', signal: AbortSignal.any([signal, AbortSignal.timeout(ATTEMPT_TIMEOUT_MS)]) });
      await res.body?.cancel();
      const ok = p.expectStatus !== undefined ? res.status === p.expectStatus : res.status >= 200 && res.status < 400;
      if (!ok) throw new Error(`GET ${new URL(url).origin}${new URL(url).pathname} answered ${res.status}${p.expectStatus !== undefined ? `, expected ${p.expectStatus}` : ''}`);
      return;
    }
    case 'command': {
      const r = await run('/bin/sh', ['-c', fill(p.command, t)], { timeoutMs: 60_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/', ...t.env } });
      if (r.code !== 0) throw new Error(`command exited with ${r.code ?? 'a timeout'}: ${(r.stderr || r.stdout).trim().slice(-300)}`);
      return;
    }
  }
}

/** Probes until success or timeout; never throws for a failed probe (only when aborted). */
export async function runProbe(p: Probe, t: ProbeTarget, signal: AbortSignal): Promise<ProbeResult> {
  const deadline = Date.now() + (p.timeoutSeconds ?? DEFAULT_PROBE_TIMEOUT_SECONDS) * 1000;
  let attempts = 0;
  let lastError: string | null = null;
  for (;;) {
    signal.throwIfAborted();
    attempts++;
    try {
      await attempt(p, t, signal);
      return { ok: true, attempts, at: new Date().toISOString(), lastError };
    } catch (err) {
      if (signal.aborted) throw signal.reason as Error;
      lastError = (err as Error).message;
    }
    if (Date.now() + RETRY_MS > deadline) return { ok: false, attempts, at: new Date().toISOString(), lastError };
    await sleep(RETRY_MS, signal);
  }
}

/** Checks a probe's shape beyond its schema (URLs, placeholders). */
export function checkProbe(p: Probe): Probe {
  if (p.kind === 'http') {
    let protocol = '';
    try {
      protocol = new URL(p.url.replaceAll('{address}', '127.0.0.1').replaceAll('{machine}', 'm')).protocol;
    } catch {
      protocol = '';
    }
    if (protocol !== 'http:' && protocol !== 'https:') throw new RefugeError('invalid_argument', `probe URL '${p.url}' is not an http(s) URL`, { details: { field: '/body/probe/url' } });
  }
  return p;
}
