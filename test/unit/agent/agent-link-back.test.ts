import { randomBytes } from 'node:crypto';
import { open, readFile, writeFile } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ScanCapture } from '../../../src/agent/capture/scan-capture.js';
import type { ChunkBodyEncoding, ReplicatorTransport } from '../../../src/agent/clients.js';
import type { CommitPointRequest } from '../../../src/protocol/schemas.js';
import { MiB, startAgentFixture, waitFor, type AgentFixture } from '../../helpers/agent/agent-fixture.js';

/** A TCP relay to the vault that the test can take down (every connection cut, new ones refused) and bring back. */
async function vaultRelay(target: URL): Promise<{ url: string; setDown(down: boolean): void; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let down = false;
  const server: Server = createServer((client) => {
    if (down) return void client.destroy();
    const upstream = createConnection(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `https://127.0.0.1:${(server.address() as { port: number }).port}`,
    setDown(value) {
      down = value;
      if (down) for (const s of sockets) s.destroy();
    },
    close: () => new Promise<void>((r) => {
      server.close(() => r());
      for (const s of sockets) s.destroy(); // keep-alive connections would hold the server open
    }),
  };
}

/**
 * Uploads that hang on a dead connection (as they do when the link goes down mid-upload: TCP keeps retransmitting
 * with exponential backoff) until the agent aborts them; the abort's reason is kept.
 */
class StuckUploads implements ReplicatorTransport {
  inner: ReplicatorTransport | undefined;
  stuck = false;
  waiting = 0;
  abortReasons: string[] = [];

  private get to(): ReplicatorTransport {
    if (!this.inner) throw new Error('no cut has started yet');
    return this.inner;
  }

  missing(hashes: string[], signal?: AbortSignal): Promise<string[]> {
    return this.to.missing(hashes, signal);
  }

  async putChunk(hash: string, body: Uint8Array, encoding: ChunkBodyEncoding, signal?: AbortSignal): Promise<void> {
    if (this.stuck) {
      this.waiting++;
      await new Promise<void>((_, reject) => signal?.addEventListener('abort', () => {
        this.abortReasons.push(String((signal.reason as Error | undefined)?.message));
        reject(signal.reason as Error);
      }, { once: true }));
    }
    return this.to.putChunk(hash, body, encoding, signal);
  }

  commit(req: CommitPointRequest) {
    return this.to.commit(req);
  }
}

/**
 * Reliability row R2: the link comes back after an outage during an upload. The uploads in flight sit on
 * connections TCP would take long to revive; once heartbeats get through again the agent restarts the cut on fresh
 * connections, and the point holds the disk's bytes.
 */
describe('agent: the network comes back after an outage mid-upload', () => {
  let f: AgentFixture;
  let relay: Awaited<ReturnType<typeof vaultRelay>>;
  const lines: string[] = [];

  beforeEach(async () => {
    f = await startAgentFixture('raglink-');
    relay = await vaultRelay(new URL(f.server.url));
  }, 30_000);
  afterEach(async () => {
    await f.close();
    await relay.close();
  });

  it('restarts the stuck upload as soon as a heartbeat gets through again; the next point equals the disk', async () => {
    const image = join(f.dir, 'disk0.raw');
    await writeFile(image, randomBytes(2 * MiB));
    const uploads = new StuckUploads();
    const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    f.startAgent(new ScanCapture({ disks: [{ name: 'disk0', path: image }] }), [{ name: 'disk0', sizeBytes: 2 * MiB }], {
      vaultUrl: relay.url,
      log,
      transportFor: (client) => {
        uploads.inner = client;
        return uploads;
      },
    });
    await f.enable();
    await waitFor(async () => (await f.points()).length >= 1, 20_000, 'the first point');

    // New data; its upload hangs; then the vault becomes unreachable for a few heartbeats.
    uploads.stuck = true;
    const file = await open(image, 'r+');
    await file.write(randomBytes(64 * 1024), 0, 64 * 1024, MiB);
    await file.close();
    const changedAt = new Date();
    await waitFor(() => uploads.waiting > 0, 20_000, 'an upload hanging');
    relay.setDown(true);
    const before = lines.length;
    await waitFor(() => lines.slice(before).filter((l) => l.includes('heartbeat failed')).length >= 3, 20_000, 'heartbeats failing');
    expect(uploads.abortReasons).toEqual([]); // an outage alone does not abort the upload: only the link coming back does

    uploads.stuck = false;
    relay.setDown(false);
    await waitFor(() => uploads.abortReasons.length > 0, 20_000, 'the stuck upload aborted');
    expect(uploads.abortReasons[0]).toMatch(/the network came back/);
    expect(lines.some((l) => l.includes('restarting the upload in flight'))).toBe(true);
    const point = await f.pointAfter(changedAt, 20_000);
    const rep = (await f.api<{ id: string }>('GET', '/vaults/demo/replications/vm1')).id;
    expect((await f.restore(rep, point.id)).equals(await readFile(image))).toBe(true);
  }, 60_000);
});
