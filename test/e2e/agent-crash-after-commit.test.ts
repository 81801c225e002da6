import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSentCommit } from '../../src/agent/sent-commit.js';
import { loadState } from '../../src/agent/state.js';
import { FilesystemBackend } from '../../src/store/backends/filesystem.js';
import { LEAF_SIZE, nameFromLeafDigests } from '../../src/store/chunks.js';
import { ReplicaStore } from '../../src/store/replica-store.js';
import { verifyStore } from '../../src/store/verify.js';
import { CHUNK, MiB, startAgentFixture, waitFor, type AgentFixture } from '../helpers/agent/agent-fixture.js';
import { NBD, RawNbdClient } from '../helpers/agent/raw-nbd-client.js';

const root = join(import.meta.dirname, '..', '..');
const SIZE = 16 * MiB;
/** Bytes of one chunk's leaf digests in the agent's leaf-digest file (32 per 16 KiB leaf). */
const DIGEST_BYTES = (CHUNK / LEAF_SIZE) * 32;
/**
 * The chunks written: A and B = A + 1, in the disk's last 1 MiB region (chunks 60-63). High indexes, because one chunk
 * in 64 is read whole anyway, the one whose index is the agent run's points so far modulo 64 (ship-by-leaves.ts
 * `sampled`): A and B would need 61 points in one run (a minute) to be sampled.
 */
const A = 61;
const B = 62;
const KILLED = 'killed by fault injection: commit answered, state not saved (REFUGE_TEST_CRASH_AFTER_COMMIT)';

interface LogLine {
  msg?: string;
  point?: string;
  readBytes?: number;
  tracking?: Record<string, string>;
  err?: { message?: string };
}

interface AgentRun {
  child: ChildProcess;
  lines: () => LogLine[];
  /** Exited, and everything it wrote read (`exit` may come before the last output). */
  closed: () => boolean;
}

/**
 * The leaf-digest cache of the cdp agent (src/agent/leaf-digests.ts) across a real SIGKILL at the commit: the agent
 * process kills itself (REFUGE_TEST_CRASH_AFTER_COMMIT) once the vault has answered a point's commit, before it saves
 * its state, forgets the sent commit and completes the cut. docs/design-delta-points.md (stage 4) updates the digests
 * after the answer; the agent writes them while the chunks ship, before the commit, and trusts a chunk's digests only
 * when they give the name it remembers for the chunk. So the test kills it there twice: once with the digest file as
 * the agent left it (the point's digests already written), once with the point's digests taken back out of the file
 * (the design's window: commit answered, digests not written). Each restarted agent takes the point up by sending
 * its commit again (no full resync), reads the crashed point's chunks whole, then ships by leaves again; every point
 * restores to the image's bytes; the store verifies clean. After a kill the cache is never asked about the crashed
 * point's chunks (the write-intent log marks their 1 MiB region whole, and whole chunks are read whole), so a cache
 * trusting stale digests would pass that far: the last step makes digests stale where the cache is asked (a digests'
 * write lost, as on a full disk) and checks that the chunk is read whole.
 */
describe('cdp agent killed between a commit\'s answer and recording it: the leaf digests', () => {
  let f: AgentFixture;
  let image: string;
  let stateDir: string;
  let digestPath: string;
  let registration: string;
  const runs: AgentRun[] = [];

  const startAgent = (env: Record<string, string> = {}): AgentRun => {
    const args = ['--credentials', registration, 'agent', '--site', 'primary', '--name', 'vm1', '--disk', `disk0=${image}`, '--capture', 'cdp', '--state-dir', stateDir, '--heartbeat', '1s'];
    const child = spawn(process.execPath, [join(root, 'bin', 'refuge.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, REFUGE_LOG_LEVEL: 'info', ...env } });
    let text = '';
    child.stdout?.on('data', (d: Buffer) => (text += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (text += d.toString()));
    const lines = () =>
      text.split('\n').flatMap((l) => {
        try {
          return l.startsWith('{') ? [JSON.parse(l) as LogLine] : [];
        } catch {
          return []; // a line still being written
        }
      });
    let closed = false;
    child.once('close', () => (closed = true));
    const run = { child, lines, closed: () => closed };
    runs.push(run);
    return run;
  };
  const committed = (run: AgentRun) => run.lines().filter((l) => l.msg === 'recovery point committed');
  /** Waits for the run's first committed point: it resent the crashed commit and cut once since. */
  const firstCommitted = async (run: AgentRun): Promise<LogLine> => {
    await waitFor(() => committed(run).length > 0, 30_000, 'a point committed by the restarted agent');
    return committed(run)[0] as LogLine;
  };
  /**
   * Waits for the run to die and checks that it was its own SIGKILL, right after a commit's answer (its line names the
   * point; the caller checks that the agent did not record it).
   */
  const killedAfterCommit = async (run: AgentRun): Promise<LogLine> => {
    await waitFor(() => run.closed(), 30_000, 'the agent killing itself after the commit');
    expect({ signal: run.child.signalCode, code: run.child.exitCode }).toEqual({ signal: 'SIGKILL', code: null });
    const killed = run.lines().find((l) => l.msg === KILLED);
    expect(killed, JSON.stringify(run.lines().slice(-4))).toBeDefined();
    return killed as LogLine;
  };
  /** One NBD write through the agent's export (one request: one cut holds all of it). */
  const writeDisk = async (offset: number, data: Buffer) => {
    const nbd = await RawNbdClient.attach(join(stateDir, 'nbd', 'disk0.sock'));
    try {
      nbd.request(NBD.cmd.write, 1n, offset, data.length, 0, data);
      expect((await nbd.reply()).error).toBe(0);
    } finally {
      nbd.close();
    }
  };
  /** The first point cut after now (after a write: the point holding it), once `run` has logged it committed. */
  const nextPoint = async (run: AgentRun) => {
    const point = await f.pointAfter(new Date(), 15_000).catch((err: Error) => {
      const said = run.lines().filter((l) => l.err).slice(-3).map((l) => `${l.msg}: ${l.err?.message}`);
      throw new Error(`${err.message}; the agent said: ${said.join('; ') || 'nothing'}`);
    });
    await waitFor(() => committed(run).some((l) => l.point === point.id), 10_000, 'the point logged');
    return point;
  };
  /** The name chunk `index`'s digests in the digest file `file` give. */
  const nameIn = (file: Buffer, index: number) => nameFromLeafDigests(CHUNK, file.subarray(index * DIGEST_BYTES, (index + 1) * DIGEST_BYTES));
  /** The crashed point's changes, from the commit the agent kept to send again (sent-commit.ts). */
  const sentChanges = async () => new Map((await loadSentCommit(stateDir))?.request.disks[0]?.changes ?? []);

  beforeAll(async () => {
    f = await startAgentFixture('ragcrash-');
    image = join(f.dir, 'disk0.raw');
    stateDir = join(f.dir, 'agent');
    digestPath = join(stateDir, 'leaf-digests', 'disk0.bin');
    registration = join(f.dir, 'agent-registration.json');
    await writeFile(registration, JSON.stringify(await f.registrationFile()), { mode: 0o600 });
  });
  afterAll(async () => {
    for (const { child, closed } of runs) {
      if (closed()) continue;
      child.kill('SIGKILL');
      await waitFor(closed, 10_000, 'the agent killed');
    }
    await f?.close();
  });

  it('resends the commit, reads the crashed point\'s chunks whole, never names a chunk wrongly: every point restores exactly', async () => {
    const disk = Buffer.alloc(SIZE);
    randomBytes(2 * MiB).copy(disk, 2 * MiB);
    randomBytes(2 * MiB).copy(disk, 14 * MiB); // chunks 56-63, A and B among them
    await writeFile(image, disk);

    // The seed is the run's first commit with changes, point 1 (written below) its second.
    const p1 = startAgent({ REFUGE_TEST_CRASH_AFTER_COMMIT: '2' });
    const rep = await f.enable();
    const seed = await f.pointAfter(new Date(0), 60_000);
    expect((await f.restore(rep, seed.id)).equals(disk)).toBe(true);
    const storeDir = join(f.dir, 'vault', 'sites', 'recovery', 'store');
    // Leaf-digest names: the agent keeps leaf digests for such stores only.
    expect((await ReplicaStore.open(new FilesystemBackend(storeDir))).naming).toBe('leaf16');
    const wireAfterSeed = f.counters(rep)?.wireBytesReceived ?? 0;
    const seedDigests = await readFile(digestPath); // complete: digests are written before the commit

    // Point 1: A's last leaf and B's first. The agent dies once its commit is answered.
    await writeDisk(B * CHUNK - LEAF_SIZE, randomBytes(2 * LEAF_SIZE));
    const image1 = await readFile(image);
    const point1 = await killedAfterCommit(p1);
    expect(point1.readBytes).toBe(2 * LEAF_SIZE); // shipped by leaves: the two written leaves
    const sent1 = await loadSentCommit(stateDir);
    // The vault has the point of the commit the agent kept to send again; the agent's state names its parent.
    expect((await f.points()).find((p) => p.id === point1.point)?.capturedAt).toBe(sent1?.request.capturedAt);
    expect((await loadState(stateDir)).lastPointId).toBe(sent1?.request.parentId);
    const changes1 = await sentChanges();
    expect([...changes1.keys()]).toEqual([A, B]);
    expect((await f.restore(rep, point1.point as string)).equals(image1)).toBe(true);
    // The agent writes a point's digests while its chunks ship, before the commit: the file names point 1's chunks.
    const digests1 = await readFile(digestPath);
    for (const [index, name] of changes1) {
      expect(nameIn(digests1, index)).toBe(name);
      expect(nameIn(seedDigests, index)).not.toBe(name);
    }

    // Restarted with the digest file as the agent left it; killed again after its first commit with changes.
    const p2 = startAgent({ REFUGE_TEST_CRASH_AFTER_COMMIT: '1' });
    const first2 = await firstCommitted(p2);
    expect(p2.lines().find((l) => l.msg === 'cdp capture serving disks over NBD')?.tracking).toEqual({ disk0: 'intent-log' });
    expect(p2.lines().some((l) => l.msg?.startsWith('a commit whose answer was lost is answered now') && l.point === point1.point)).toBe(true);
    expect(first2.readBytes).toBe(MiB); // the region the intent log names (chunks 60-63) read whole, not the 16 MiB disk
    const digestsBefore2 = await readFile(digestPath);
    expect(nameIn(digestsBefore2, B)).toBe(changes1.get(B));
    // Point 2: a leaf of B, shipped by leaves: B's digests (point 1's) are trusted, being right.
    await writeDisk(B * CHUNK + 5 * LEAF_SIZE + 100, randomBytes(4096));
    const image2 = await readFile(image);
    const point2 = await killedAfterCommit(p2);
    expect(point2.readBytes).toBe(LEAF_SIZE);
    expect((await f.restore(rep, point2.point as string)).equals(image2)).toBe(true);
    const changes2 = await sentChanges();
    expect([...changes2.keys()]).toEqual([B]);

    // The design's window: point 2's commit answered, its digests not written. The file as it was before point 2
    // shipped: B's digests name point 1's B, while the restarted agent will remember point 2's.
    await writeFile(digestPath, digestsBefore2);
    expect(nameIn(digestsBefore2, B)).not.toBe(changes2.get(B));
    const p3 = startAgent();
    const first3 = await firstCommitted(p3);
    expect(p3.lines().some((l) => l.msg?.startsWith('a commit whose answer was lost is answered now') && l.point === point2.point)).toBe(true);
    expect(first3.readBytes).toBe(MiB); // B with its stale digests among the chunks read whole
    expect(nameIn(await readFile(digestPath), B)).toBe(changes2.get(B)); // the whole read wrote B's digests again
    // Shipping by leaves again.
    const shippedFrom = (from: number) => committed(p3).slice(from).reduce((n, l) => n + (l.readBytes ?? 0), 0);
    let from = committed(p3).length;
    await writeDisk(B * CHUNK + 9 * LEAF_SIZE, randomBytes(4096));
    let point = await nextPoint(p3);
    expect(shippedFrom(from)).toBe(LEAF_SIZE);
    expect((await f.restore(rep, point.id)).equals(await readFile(image))).toBe(true);

    // The kill -9 above never had the cache asked about the crashed point's chunks: the intent log marks their
    // region whole. Where it is asked, stale digests (a digests' write lost, as on a full disk: writeLeaves ignores
    // its failure) must cost the chunk read whole. B's digests set back to point 1's in place, between points.
    const file = await open(digestPath, 'r+');
    await file.write(digestsBefore2, B * DIGEST_BYTES, DIGEST_BYTES, B * DIGEST_BYTES);
    await file.close();
    from = committed(p3).length;
    await writeDisk(B * CHUNK + 12 * LEAF_SIZE, randomBytes(4096));
    point = await nextPoint(p3);
    expect(shippedFrom(from)).toBe(CHUNK); // trusting the stale digests would have read one leaf and named B wrongly
    expect((await f.restore(rep, point.id)).equals(await readFile(image))).toBe(true);

    p3.child.kill('SIGTERM');
    await waitFor(() => p3.closed(), 30_000, 'the agent stopping');
    expect(p3.child.exitCode).toBe(0);
    // No full resync in any run: nothing compared every chunk, and only the written leaves travelled.
    for (const run of runs) expect(run.lines().filter((l) => l.msg?.startsWith('the vault knows another latest point'))).toEqual([]);
    expect((f.counters(rep)?.wireBytesReceived ?? 0) - wireAfterSeed).toBeLessThan(CHUNK);
    expect((await verifyStore(await ReplicaStore.open(new FilesystemBackend(storeDir)))).problems).toEqual([]);
  });
});
