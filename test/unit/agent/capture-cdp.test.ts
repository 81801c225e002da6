import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
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
      await expect(next.disks[0]?.readRun?.(2, 2, Buffer.alloc(2 * chunk))).rejects.toThrow(/is 8192 bytes, not 65536/);
      await next.abandon();
      await mode.stop();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
