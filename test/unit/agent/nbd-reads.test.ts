import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { createServer, connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileBlockDevice, type BlockDevice } from '../../../src/nbd/block-device.js';
import { payloadPoolStats } from '../../../src/nbd/payload-pool.js';
import { readInPlace } from '../../../src/nbd/read-in-place.js';
import { NbdServer } from '../../../src/nbd/server.js';
import { StreamReader } from '../../../src/nbd/stream-reader.js';
import { NBD, RawNbdClient, u16, u32, u64 } from '../../helpers/agent/raw-nbd-client.js';

const MiB = 1024 * 1024;
const SIZE = 8 * MiB;
const tick = () => new Promise((resolve) => setImmediate(resolve));

/** One request on the wire (28-byte header, then a write's payload). */
function frame(type: number, handle: bigint, offset: number, length: number, payload?: Buffer): Buffer {
  return Buffer.concat([u32(0x25609513), u16(0), u16(type), u64(handle), u64(BigInt(offset)), u32(length), ...(payload ? [payload] : [])]);
}

/**
 * How the server reads requests off its sockets (connection.ts with read-in-place.ts and payload-pool.ts): a large
 * WRITE's payload is read straight into a reused buffer and everything else through one scratch buffer that the
 * next read overwrites, so what arrives in pieces cut anywhere must still come out as the same requests.
 */
describe('nbd server: reading requests in place', () => {
  let dir: string;
  let image: string;
  let device: FileBlockDevice;
  let server: NbdServer | undefined;
  let socketPath: string;

  const serve = async (d: BlockDevice) => {
    server = await NbdServer.start({ listen: { socketPath }, exports: [{ name: 'disk0', device: d }] });
  };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'refuge-nbd-reads-'));
    image = join(dir, 'disk.raw');
    await writeFile(image, '');
    await truncate(image, SIZE);
    device = FileBlockDevice.open(image);
    socketPath = join(dir, 'nbd.sock');
  });
  afterEach(async () => {
    await server?.close();
    server = undefined;
    device.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('adopts an accepted socket: its reads land in the buffers the owner gives, and pause and end still work', async () => {
    const mine = Buffer.alloc(64);
    const got: string[] = [];
    let adopted: Socket | undefined;
    const ended = new Promise<void>((resolve) => {
      const s = createServer({ pauseOnConnect: true }, (accepted) => {
        adopted = readInPlace(accepted, {
          buffer: () => mine,
          callback: (n, buf) => {
            expect(buf).toBe(mine);
            got.push(mine.subarray(0, n).toString());
            return true;
          },
        });
        adopted?.on('end', () => {
          s.close();
          resolve();
        });
      });
      s.listen(join(dir, 'plain.sock'), () => {
        const c = netConnect(join(dir, 'plain.sock'), () => {
          c.write('hello, ');
          setTimeout(() => c.end('world'), 20);
        });
      });
    });
    await ended;
    expect(adopted).toBeDefined(); // a Node whose internals changed would fall back to a buffer per read: noticed here
    expect(got.join('')).toBe('hello, world');
    adopted?.destroy();
  });

  it('serves a stream of writes of every size, cut into pieces at arbitrary points, byte for byte', async () => {
    await serve(device);
    const model = Buffer.alloc(SIZE);
    // Runs of small writes put many requests, and a header cut short, into one read of the scratch buffer.
    const small = () => Array.from({ length: 60 }, () => 1 + Math.floor(Math.random() * 6000));
    const lengths = [1, 4096, ...small(), 65_536, 65_537, 300_000, ...small(), MiB, MiB + 1, 3 * MiB, 512, ...small(), MiB];
    const parts: Buffer[] = [];
    let handle = 1n;
    for (const length of lengths) {
      const offset = Math.floor(Math.random() * (SIZE - length));
      const payload = randomBytes(length);
      payload.copy(model, offset);
      parts.push(frame(NBD.cmd.write, handle++, offset, length, payload));
      parts.push(frame(NBD.cmd.read, handle++, offset, Math.min(length, 4096))); // reads see the write before them
    }
    const stream = Buffer.concat(parts);
    const c = await RawNbdClient.attach(socketPath);
    try {
      // Pieces of 1 byte to 300 KB, each sent on its own turn so most arrive as separate reads.
      for (let at = 0; at < stream.length; ) {
        const n = Math.random() < 0.3 ? 1 + Math.floor(Math.random() * 40) : 1 + Math.floor(Math.random() * 300_000);
        c.send(stream.subarray(at, at + n));
        at += n;
        await tick();
      }
      let expectHandle = 1n;
      for (const length of lengths) {
        const w = await c.reply();
        expect(w).toMatchObject({ error: 0, handle: expectHandle++ });
        const r = await c.reply(Math.min(length, 4096));
        expect(r.handle).toBe(expectHandle++);
      }
    } finally {
      c.close();
    }
    expect((await readFile(image)).equals(model)).toBe(true);
  });

  it('a write arriving while replies back up (the client not reading) lands whole: no read goes to a stale place in its payload', async () => {
    // An in-memory device answering on a later turn: reads queue 1 MiB replies until the output passes its high-water
    // mark (32 MiB) and parsing waits for the drain, with the next write's header and part of its payload read.
    const mem = Buffer.alloc(64 * MiB);
    const later = () => new Promise<void>((resolve) => setImmediate(resolve));
    const slow: BlockDevice = {
      sizeBytes: mem.length,
      readOnly: false,
      read: async (t, o) => void (await later(), mem.copy(t, 0, o, o + t.length)),
      write: async (d, o) => {
        await later();
        Buffer.concat([...d]).copy(mem, o);
      },
      writeZeroes: () => undefined,
      trim: () => undefined,
      flush: () => undefined,
    };
    await serve(slow);
    const c = await RawNbdClient.attach(socketPath);
    try {
      c.socket.pause(); // replies pile up in the server
      // 32 replies of 1 MiB and their headers: just past the 32 MiB mark, crossed by the last reply, written after its
      // request was parsed; so the server notices only after parsing the next request, the write's header.
      const reads = 32;
      for (let n = 0; n < reads; n++) {
        c.request(NBD.cmd.read, BigInt(n), 0, MiB);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const pattern = Buffer.alloc(MiB);
      for (let i = 0; i < MiB / 4; i++) pattern.writeUInt32BE(i, i * 4);
      c.request(NBD.cmd.write, 1000n, 8 * MiB, MiB, 0, pattern);
      await new Promise((resolve) => setTimeout(resolve, 300));
      c.socket.resume();
      for (let n = 0; n < reads; n++) expect((await c.reply(MiB)).handle).toBe(BigInt(n));
      expect(await c.reply()).toMatchObject({ handle: 1000n, error: 0 });
      expect(mem.subarray(8 * MiB, 9 * MiB).equals(pattern)).toBe(true);
    } finally {
      c.close();
    }
  });

  it('after OPT_ABORT drops what a half-open client still sends, and closes without waiting for it', async () => {
    await serve(device);
    const c = netConnect({ path: socketPath, allowHalfOpen: true }); // keeps its side open after the server's end
    c.on('data', () => undefined);
    c.on('error', () => undefined);
    try {
      await new Promise((resolve) => c.once('connect', resolve));
      c.write(Buffer.concat([u32(1), u64(0x49484156454f5054n), u32(NBD.opt.abort), u32(0)]));
      await new Promise((resolve) => setTimeout(resolve, 100));
      const junk = Buffer.alloc(256 * 1024);
      for (let n = 0; n < 40; n++) c.write(junk);
      await new Promise((resolve) => setTimeout(resolve, 100));
      const closed = await Promise.race([(server as NbdServer).close().then(() => true), new Promise((resolve) => setTimeout(() => resolve(false), 3000))]);
      expect(closed).toBe(true);
      server = undefined;
    } finally {
      c.destroy();
    }
  });

  it('gives pooled payload buffers back after each write, whether the device applied it or failed', async () => {
    let fail = false;
    const flaky: BlockDevice = {
      sizeBytes: SIZE,
      readOnly: false,
      read: (t, o) => device.read(t, o),
      write: async (d, o, fua) => {
        if (fail) throw Object.assign(new Error('gone'), { code: 'EIO' });
        await device.write(d, o, fua);
      },
      writeZeroes: (o, l, f) => device.writeZeroes(o, l, f),
      trim: () => undefined,
      flush: () => device.flush(),
    };
    await serve(flaky);
    const c = await RawNbdClient.attach(socketPath);
    try {
      const write = async (n: number) => {
        c.request(NBD.cmd.write, BigInt(n), (n % 8) * MiB, MiB, 0, randomBytes(MiB));
        return (await c.reply()).error;
      };
      await write(0);
      const { created } = payloadPoolStats();
      for (let n = 1; n <= 10; n++) expect(await write(n)).toBe(0);
      fail = true;
      for (let n = 11; n <= 20; n++) expect(await write(n)).toBe(NBD.errno.EIO);
      expect(payloadPoolStats().created).toBe(created); // twenty more writes, one at a time: no new buffer
      expect(payloadPoolStats().free).toBeGreaterThan(0);
    } finally {
      c.close();
    }
  });
});

describe('stream reader: keeping what a reused buffer held', () => {
  it('own() copies the unread rest, so overwriting the buffer it was read into changes nothing', () => {
    const scratch = Buffer.from('HEADER-1|HEAD');
    const r = new StreamReader();
    r.push(scratch.subarray(0, 13));
    expect(r.read(9)?.toString()).toBe('HEADER-1|');
    r.own();
    scratch.write('XXXXXXXXXXXXX'); // the next socket read lands here
    r.push(Buffer.from('ER-2'));
    expect(r.read(8)?.toString()).toBe('HEADER-2');
    const into = Buffer.alloc(6, '.');
    r.push(Buffer.from('abc'));
    r.push(Buffer.from('defg'));
    expect(r.readInto(into, 1, 5)).toBe(5);
    expect(into.toString()).toBe('.abcde');
    expect(r.available).toBe(2);
  });
});
