import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ScanCapture } from '../../../src/agent/capture/scan-capture.js';
import type { ChunkBodyEncoding, ReplicatorTransport } from '../../../src/agent/clients.js';
import { RateLimiter } from '../../../src/agent/shipping/rate-limiter.js';
import { RefugeError } from '../../../src/core/errors.js';
import type { CommitPointRequest } from '../../../src/protocol/schemas.js';
import { MiB, startAgentFixture, waitFor, type AgentFixture } from '../../helpers/agent/agent-fixture.js';

/**
 * The replicator's API with faults a test switches on: an unreachable replicator, lost answers, a slow replicator.
 * One per agent: it wraps whichever client the agent makes for each cut.
 */
class FaultyTransport implements ReplicatorTransport {
  inner: ReplicatorTransport | undefined;
  down = false;
  /** After this many more successful uploads the replicator becomes unreachable. */
  failAfterPuts = Infinity;
  loseNextCommitAnswer = false;
  private gate: Promise<void> | undefined;
  private openGate: (() => void) | undefined;
  waitingPuts = 0;

  private get to(): ReplicatorTransport {
    if (!this.inner) throw new Error('no cut has started yet');
    return this.inner;
  }

  private check(): void {
    if (this.down) throw new RefugeError('unavailable', 'connection refused (injected)');
  }

  holdUploads(): void {
    this.gate = new Promise((resolve) => (this.openGate = resolve));
  }

  releaseUploads(): void {
    this.openGate?.();
    this.gate = undefined;
  }

  async missing(hashes: string[], signal?: AbortSignal): Promise<string[]> {
    this.check();
    return this.to.missing(hashes, signal);
  }

  async putChunk(hash: string, body: Uint8Array, encoding: ChunkBodyEncoding, signal?: AbortSignal): Promise<void> {
    this.check();
    if (this.gate) {
      this.waitingPuts++;
      await this.gate;
      this.waitingPuts--;
    }
    await this.to.putChunk(hash, body, encoding, signal);
    if (--this.failAfterPuts <= 0) {
      this.down = true;
      this.failAfterPuts = Infinity;
    }
  }

  async commit(req: CommitPointRequest) {
    this.check();
    const r = await this.to.commit(req);
    if (this.loseNextCommitAnswer) {
      this.loseNextCommitAnswer = false;
      throw new RefugeError('unavailable', 'connection reset before the answer arrived (injected)');
    }
    return r;
  }
}

/**
 * The replication protocol's behaviour under faults, against a real vault and replicator: resuming after the
 * replicator was unreachable without a resync or a second copy of anything, a commit whose answer was lost,
 * backpressure from a slow replicator with the backlog reported in heartbeats, and compression on the wire.
 */
describe('agent shipping: faults, backpressure, compression', () => {
  let f: AgentFixture;
  let image: string;
  let faults: FaultyTransport;

  const start = (sizeBytes: number, shipping = {}) =>
    f.startAgent(new ScanCapture({ disks: [{ name: 'disk0', path: image }] }), [{ name: 'disk0', sizeBytes }], {
      transportFor: (client) => {
        faults.inner = client;
        return faults;
      },
      shipping: { retry: { attempts: 2, firstDelayMs: 10 }, ...shipping },
    });
  const machineProgress = async () =>
    (await f.api<{ progress: { pendingBytes: number; doneBytes: number } | null }>('GET', '/vaults/demo/replications/vm1')).progress;

  beforeEach(async () => {
    f = await startAgentFixture('ragship-');
    image = join(f.dir, 'disk0.raw');
    faults = new FaultyTransport();
  });
  afterEach(async () => {
    faults.releaseUploads();
    await f.close();
  });

  it('resumes after the replicator became unreachable mid-seeding: no resync, no chunk stored twice', async () => {
    await writeFile(image, randomBytes(16 * MiB));
    const agent = start(16 * MiB, { batchBytes: 2 * MiB, concurrency: 1 });
    const rep = await f.enable();
    faults.failAfterPuts = 5;
    await waitFor(() => agent.counters.cutsAbandoned >= 1, 20_000, 'a failed cut');
    faults.down = false;
    const point = await f.pointAfter(new Date(0));
    expect((await f.restore(rep, point.id)).equals(await readFile(image))).toBe(true);
    expect(f.counters(rep)?.bytesReceived).toBe(16 * MiB); // every chunk once
    expect(agent.counters.upload.deduplicated).toBeGreaterThanOrEqual(5); // the ones stored before the cut: not re-sent
  });

  it('retries a commit whose answer was lost and gets the same point back (no resync afterwards)', async () => {
    await writeFile(image, randomBytes(4 * MiB));
    const agent = start(4 * MiB);
    const rep = await f.enable();
    faults.loseNextCommitAnswer = true;
    const first = await f.pointAfter(new Date(0));
    // The vault lists a point before its answer reaches the agent (and here before the retry replays it): wait for both.
    await waitFor(() => f.counters(rep)?.commitsReplayed === 1 && agent.counters.pointsCommitted === 1, 20_000, 'the replayed commit answered');
    const pointsAfterFirst = agent.counters.pointsCommitted;
    await f.pointAfter(new Date(Date.parse(first.capturedAt)));
    await waitFor(() => agent.counters.pointsCommitted > pointsAfterFirst, 20_000, 'the next point answered');
    expect(agent.counters.cutsAbandoned).toBe(0); // the lost answer never turned into a conflict
    expect(f.counters(rep)?.bytesReceived).toBe(4 * MiB);
  });

  it('holds at most three batches when the replicator is slow (two uploading, one filling), and reports the backlog in heartbeats', async () => {
    await writeFile(image, randomBytes(24 * MiB));
    start(24 * MiB, { batchBytes: 4 * MiB, concurrency: 2 });
    faults.holdUploads();
    const rep = await f.enable();
    await waitFor(async () => ((await machineProgress())?.pendingBytes ?? 0) >= 8 * MiB, 20_000, 'a reported backlog');
    await new Promise((r) => setTimeout(r, 1000)); // let the agent run into its bound
    const stalled = await machineProgress();
    expect(stalled?.doneBytes).toBeLessThanOrEqual(3 * 4 * MiB + MiB); // read no further than three batches and a chunk
    expect(stalled?.pendingBytes).toBeLessThanOrEqual(24 * MiB);
    faults.releaseUploads();
    const point = await f.pointAfter(new Date(0));
    expect((await f.restore(rep, point.id)).equals(await readFile(image))).toBe(true);
    await waitFor(async () => (await machineProgress())?.pendingBytes === 0, 20_000, 'the backlog reported drained');
  });

  it('compresses what compresses and sends random bytes as they are', async () => {
    const disk = Buffer.alloc(4 * MiB);
    for (let at = 0; at < 2 * MiB; at += 64) disk.write(`line ${at} of a very compressible log file. `, at);
    randomBytes(MiB).copy(disk, 3 * MiB);
    await writeFile(image, disk);
    start(4 * MiB);
    const rep = await f.enable();
    const point = await f.pointAfter(new Date(0));
    expect((await f.restore(rep, point.id)).equals(disk)).toBe(true);
    const c = f.counters(rep);
    expect(c?.bytesReceived).toBe(3 * MiB);
    expect(c?.wireBytesReceived).toBeGreaterThan(MiB); // the random chunk went whole
    expect(c?.wireBytesReceived).toBeLessThan(MiB + MiB / 2); // the two text chunks shrank to a fraction
  });
});

describe('rate limiter', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('lets sends start only as fast as the rate drains them', async () => {
    vi.useFakeTimers();
    const limiter = new RateLimiter(1000); // bytes per second
    let started = 0;
    const send = (bytes: number) => limiter.take(bytes).then(() => started++);
    void send(500); // starts at once, occupies the link for 0.5 s
    void send(1000); // starts after 0.5 s, occupies it until 1.5 s
    void send(10); // starts after 1.5 s
    await vi.advanceTimersByTimeAsync(0);
    expect(started).toBe(1);
    await vi.advanceTimersByTimeAsync(499);
    expect(started).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(started).toBe(2);
    await vi.advanceTimersByTimeAsync(999);
    expect(started).toBe(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(started).toBe(3);
  });

  it('does not limit at rate 0', async () => {
    const limiter = new RateLimiter(0);
    await limiter.take(1e12);
  });
});
