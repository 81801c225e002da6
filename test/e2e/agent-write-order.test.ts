import { truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CaptureMode } from '../../src/agent/capture/capture-mode.js';
import { CdpCapture } from '../../src/agent/capture/cdp-capture.js';
import { sleep } from '../../src/core/durations.js';
import { GUEST_CMDLINE, ensureDemoGuest } from '../../src/fabric/demo-guest.js';
import { QemuProvider } from '../../src/fabric/qemu/qemu-provider.js';
import { FilesystemBackend } from '../../src/store/backends/filesystem.js';
import { ReplicaStore } from '../../src/store/replica-store.js';
import { MiB, startAgentFixture, waitFor, type AgentFixture } from '../helpers/agent/agent-fixture.js';
import { RECORD_BYTES, ackedRecords, checkRecords, headRecord } from '../helpers/agent/records.js';

const RECORDS = 600;
const SIZE = 64 * MiB;

/**
 * Reads each chunk of every cut after the seeding one only after a pause, as a slow link does (backpressure holds
 * reading back): the guest keeps writing between the reads of one cut, so a point is one instant only if
 * copy-on-write preserved what those writes overwrote. Without the pause, a cut's two or three chunks would all be
 * read within a millisecond of it and the test could not tell.
 */
function withSlowReads(mode: CaptureMode, pauseMs: number): CaptureMode {
  let cuts = 0;
  return {
    kind: mode.kind,
    start: () => mode.start(),
    stop: () => mode.stop(),
    pendingBytes: () => mode.pendingBytes(),
    async cut(options) {
      const cut = await mode.cut(options);
      if (cuts++ === 0) return cut;
      return {
        capturedAt: cut.capturedAt,
        complete: () => cut.complete(),
        abandon: () => cut.abandon(),
        disks: cut.disks.map((d) => ({
          name: d.name,
          sizeBytes: d.sizeBytes,
          chunkIndexes: d.chunkIndexes,
          read: async (index: number) => {
            await sleep(pauseMs);
            return d.read(index);
          },
          ...(d.changedRuns ? { changedRuns: d.changedRuns.bind(d) } : {}),
        })),
      };
    },
  };
}

/**
 * Issue 4, must show 1 (reliability R5): write-order fidelity. A real qemu guest writes numbered, checksummed
 * records to its disk through the agent's NBD export, each one written and flushed, then named in a head block at
 * the end of the disk (a commit pointer, in another chunk), before it is acknowledged on the console and the next is
 * written. The agent cuts a crash-consistent point every second while the guest writes. Every point restored from
 * the replica store must hold an unbroken prefix of intact records, containing every record acknowledged before the
 * point's cut and every record its head names (a head read later than the records would break this: copy-on-write
 * is what keeps the two chunks of one point at one instant). A third of the way through, the agent is restarted
 * under the running guest, which waits for it and carries on; the points after the restart obey the same rule.
 */
describe('write-order fidelity: a guest writing records through the cdp agent', () => {
  let f: AgentFixture;
  let vm: QemuProvider;
  let replicationId: string;
  /** When the test first saw each record's acknowledgement on the console (after the guest's flush returned). */
  const ackSeenAt = new Map<number, number>();
  /** The agent is restarted (cleanly) a third of the way through the workload, under the running guest. */
  let restartedAt = 0;
  let restarted: CdpCapture | undefined;

  beforeAll(async () => {
    f = await startAgentFixture('ragwo-');
    const image = join(f.dir, 'disk0.raw');
    await writeFile(image, '');
    await truncate(image, SIZE);
    const socketPath = join(f.dir, 'disk0.sock');
    const startAgent = () => {
      const cdp = new CdpCapture({ disks: [{ name: 'disk0', path: image, socketPath }], stateDir: join(f.dir, 'agent', 'cdp') });
      f.startAgent(withSlowReads(cdp, 300), [{ name: 'disk0', sizeBytes: SIZE }]);
      return cdp;
    };
    startAgent();
    replicationId = await f.enable();
    await f.pointAfter(new Date(0)); // seeded

    const guest = await ensureDemoGuest();
    vm = new QemuProvider({ workDir: join(f.dir, 'vm') });
    await vm.start({
      name: 'records',
      cpus: 1,
      memoryMiB: 256,
      disks: [{ path: `nbd+unix:///disk0?socket=${socketPath}`, format: 'raw' }],
      boot: { kind: 'kernel', kernel: guest.kernel, initrd: guest.initrd, cmdline: `${GUEST_CMDLINE} refuge.workload=records refuge.records=${RECORDS}` },
    });
    await waitFor(async () => {
      const text = await vm.console('records');
      const now = Date.now();
      for (const n of ackedRecords(text)) if (!ackSeenAt.has(n)) ackSeenAt.set(n, now);
      if (text.includes('refuge-guest: error:')) throw new Error(`guest failed: ${text.slice(-500)}`);
      if (!restartedAt && ackSeenAt.size >= RECORDS / 3) {
        // Restart the agent under the running guest: qemu holds its I/O and reconnects (fabric: reconnect-delay).
        restartedAt = Date.now();
        await f.stopAgent();
        restarted = startAgent();
      }
      return text.includes('refuge-guest: records done');
    }, 300_000, 'the guest writing its records');
    await f.pointAfter(new Date()); // a point of the finished workload
    await vm.stop('records');
    await f.stopAgent();
  });
  afterAll(async () => {
    await vm?.delete('records').catch(() => undefined);
    await f?.close();
  });

  it('the guest acknowledged every record in order, across a restart of its agent', () => {
    expect([...ackSeenAt.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: RECORDS }, (_, i) => i));
    expect(restarted?.trackingOrigins).toEqual({ disk0: 'clean-stop' });
  });

  it('every recovery point holds an unbroken prefix of intact records with every record acknowledged before its cut', async () => {
    const store = await ReplicaStore.open(new FilesystemBackend(join(f.dir, 'vault', 'sites', 'recovery', 'store')));
    const ids = await store.listPointIds(replicationId);
    const prefixes: number[] = [];
    for (const id of ids) {
      const point = await store.getPoint(replicationId, id);
      const disk = await store.readRange(point, 'disk0', 0, (RECORDS + 16) * RECORD_BYTES);
      const { prefix, problems } = checkRecords(disk);
      expect({ point: id, problems }).toEqual({ point: id, problems: [] });
      const head = headRecord(await store.readRange(point, 'disk0', SIZE - RECORD_BYTES, RECORD_BYTES));
      expect({ point: id, head, headWithinPrefix: head < prefix }).toEqual({ point: id, head, headWithinPrefix: true });
      const cutAt = Date.parse(point.capturedAt);
      const mustHold = Math.max(-1, ...[...ackSeenAt].filter(([, seen]) => seen < cutAt).map(([n]) => n)) + 1;
      expect({ point: id, atLeast: prefix >= mustHold }).toEqual({ point: id, atLeast: true });
      prefixes.push(prefix);
    }
    // Many points were cut while the guest was writing, each at a different place in the record stream.
    const midway = new Set(prefixes.filter((p) => p > 0 && p < RECORDS));
    expect(midway.size).toBeGreaterThanOrEqual(8);
    const afterRestart = await Promise.all(ids.map((id) => store.getPoint(replicationId, id)));
    expect(afterRestart.filter((p) => Date.parse(p.capturedAt) > restartedAt).length).toBeGreaterThanOrEqual(4);
    expect(prefixes.at(-1)).toBe(RECORDS);
  });
});
