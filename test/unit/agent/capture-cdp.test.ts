import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CdpCapture } from '../../../src/agent/capture/cdp-capture.js';
import { NBD, RawNbdClient } from '../../helpers/agent/raw-nbd-client.js';
import { describeCaptureContract, type DiskName } from './capture-contract.js';

describeCaptureContract('cdp', async ({ dir, images }) => {
  const names = Object.keys(images) as DiskName[];
  const options = {
    disks: names.map((name) => ({ name, path: images[name], socketPath: join(dir, `${name}.sock`) })),
    stateDir: join(dir, 'state'),
  };
  let mode = new CdpCapture(options);
  let clients: Partial<Record<DiskName, RawNbdClient>> = {};
  let handle = 0n;
  const client = async (disk: DiskName) => (clients[disk] ??= await RawNbdClient.attach(join(dir, `${disk}.sock`)));
  const disconnect = () => {
    for (const c of Object.values(clients)) c.close();
    clients = {};
  };
  return {
    get mode() {
      return mode;
    },
    async write(disk, offset, data) {
      const c = await client(disk);
      c.request(NBD.cmd.write, ++handle, offset, data.length, 0, data);
      const r = await c.reply();
      if (r.error !== 0) throw new Error(`NBD write failed with errno ${r.error}`);
    },
    async restart() {
      disconnect();
      await mode.stop();
      mode = new CdpCapture(options);
      await mode.start();
    },
    async close() {
      disconnect();
      await mode.stop();
    },
  };
});

describe('cdp capture: readRun', () => {
  it('reads consecutive chunks as they were at the cut into one buffer, the short last chunk included, each at most once', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rcdp-'));
    try {
      const chunk = 64 * 1024;
      const content = randomBytes(3 * chunk + 8192); // ends in a short chunk
      const path = join(dir, 'disk0.raw');
      await writeFile(path, content);
      const socketPath = join(dir, 'disk0.sock');
      const mode = new CdpCapture({ disks: [{ name: 'disk0', path, socketPath }], stateDir: join(dir, 'state') });
      await mode.start();
      const cut = await mode.cut({ chunkSize: chunk, everyChunk: true });
      // A write after the cut, into a chunk not read yet: the run still reads the cut-time bytes.
      const c = await RawNbdClient.attach(socketPath);
      c.request(NBD.cmd.write, 1n, 2 * chunk + 4096, 4096, 0, Buffer.alloc(4096, 0xee));
      expect((await c.reply()).error).toBe(0);
      c.close();
      const d = cut.disks[0];
      if (!d?.readRun) throw new Error('cdp capture offers readRun');
      const into = Buffer.alloc(content.length - chunk);
      await d.readRun(1, 3, into);
      expect(into.equals(content.subarray(chunk))).toBe(true);
      expect((await d.read(0)).equals(content.subarray(0, chunk))).toBe(true);
      await expect(d.readRun(2, 1, Buffer.alloc(chunk))).rejects.toThrow(/not an unread chunk/);
      await cut.complete();
      const next = await mode.cut({ chunkSize: chunk, everyChunk: true });
      await expect(next.disks[0]?.readRun?.(2, 2, Buffer.alloc(2 * chunk))).rejects.toThrow(/chunks 2\+2 are 73728 bytes, not 131072/);
      await next.abandon();
      await mode.stop();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('cdp capture: cuts during large writes in flight', () => {
  it('every cut holds each 1 MiB write wholly or not at all, and every write acknowledged before it; the points add up to the disk', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rcdp-'));
    const MiB = 1024 * 1024;
    const SLOTS = 16;
    const WRITES = 300;
    const WINDOW = 8; // writes in flight at once, fewer than SLOTS: no two in flight overlap
    try {
      const path = join(dir, 'disk0.raw');
      await writeFile(path, Buffer.alloc(SLOTS * MiB));
      const socketPath = join(dir, 'disk0.sock');
      const mode = new CdpCapture({ disks: [{ name: 'disk0', path, socketPath }], stateDir: join(dir, 'state') });
      await mode.start();
      const c = await RawNbdClient.attach(socketPath);
      // Write k fills slot k % SLOTS with the number k: a torn write would leave two numbers in one slot.
      const payload = (k: number) => {
        const pattern = Buffer.alloc(4);
        pattern.writeUInt32LE(k);
        return Buffer.alloc(MiB, pattern);
      };
      const acked = new Array<number>(SLOTS).fill(0); // the latest write acknowledged, per slot
      const lastSent: number[] = [];
      let writing = true;
      const writer = (async () => {
        let sent = 0;
        const send = () => {
          const k = ++sent;
          lastSent.unshift(k % SLOTS);
          lastSent.length = Math.min(lastSent.length, WINDOW);
          c.request(NBD.cmd.write, BigInt(k), (k % SLOTS) * MiB, MiB, 0, payload(k));
        };
        while (sent < WINDOW) send();
        for (let answered = 0; answered < WRITES; answered++) {
          const r = await c.reply();
          expect(r.error).toBe(0);
          const k = Number(r.handle);
          acked[k % SLOTS] = Math.max(acked[k % SLOTS] as number, k);
          if (sent < WRITES) send();
        }
        writing = false;
      })();
      const replica = Buffer.alloc(SLOTS * MiB); // the points applied one after the other, as the store would
      const cutOnce = async () => {
        const before = [...acked];
        const cut = await mode.cut({ chunkSize: MiB, everyChunk: false });
        const d = cut.disks[0];
        if (!d) throw new Error('one disk');
        // The slots written last first: those whose writes may still have been in flight at the cut.
        const order = [...new Set([...lastSent, ...d.chunkIndexes])].filter((slot) => d.chunkIndexes.includes(slot));
        for (const slot of order) (await d.read(slot)).copy(replica, slot * MiB);
        await cut.complete();
        for (const slot of order) {
          const chunk = replica.subarray(slot * MiB, (slot + 1) * MiB);
          expect(chunk.equals(payload(chunk.readUInt32LE(0))), `slot ${slot} holds one whole write`).toBe(true);
        }
        for (let slot = 0; slot < SLOTS; slot++) {
          const k = replica.readUInt32LE(slot * MiB);
          expect(k, `slot ${slot} holds the write acknowledged before the cut, or a later one`).toBeGreaterThanOrEqual(before[slot] as number);
        }
      };
      let cuts = 0;
      while (writing) {
        await cutOnce();
        cuts++;
        await new Promise((r) => setTimeout(r, 2)); // the writes' turn
      }
      await writer;
      await cutOnce();
      expect(replica.equals(await readFile(path)), 'the points, applied in order, make the disk').toBe(true);
      c.close();
      await mode.stop();
      expect(cuts).toBeGreaterThan(3);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
