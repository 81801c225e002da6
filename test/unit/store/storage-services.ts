import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
// s3rver ships no types; only its constructor, run and close are used.
// eslint-disable-next-line @typescript-eslint/ban-ts-comment
// @ts-ignore
import S3rver from 's3rver';

/**
 * Real storage services for the backend tests, started by the tests themselves from the npm devDependencies:
 * s3rver (an S3 server on the local filesystem) and Azurite (the official Azure Storage emulator). Each listens
 * on a free loopback port with its data in a temporary folder removed afterwards.
 */

export const AZURITE_ACCOUNT = 'devstoreaccount1';
// Azurite's published well-known development key (not a secret: it is in Azure's documentation).
export const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

interface S3rverInstance {
  run(): Promise<{ port: number }>;
  close(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, deadlineMs: number): Promise<void> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = createConnection({ host: '127.0.0.1', port }, () => {
        socket.end();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`nothing listens on 127.0.0.1:${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function startS3rver(bucket = 'refuge-test'): Promise<{ endpoint: string; bucket: string; stop(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'refuge-s3rver-'));
  const Server = S3rver as unknown as new (o: object) => S3rverInstance;
  const server = new Server({ address: '127.0.0.1', port: 0, silent: true, directory: dir, configureBuckets: [{ name: bucket }] });
  const { port } = await server.run();
  return {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    stop: async () => {
      await server.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export async function startAzurite(): Promise<{ accountUrl: string; stop(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'refuge-azurite-'));
  const port = await freePort();
  const bin = join(import.meta.dirname, '..', '..', '..', 'node_modules', '.bin', 'azurite-blob');
  const child = spawn(bin, ['--blobHost', '127.0.0.1', '--blobPort', String(port), '--location', dir, '--silent', '--loose', '--skipApiVersionCheck'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  try {
    await waitForPort(port, 30_000);
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`azurite did not start: ${stderr}`, { cause: err });
  }
  return {
    accountUrl: `http://127.0.0.1:${port}/${AZURITE_ACCOUNT}`,
    stop: async () => {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}
