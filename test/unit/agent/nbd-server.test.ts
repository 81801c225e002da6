import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FileBlockDevice, type BlockDevice } from '../../../src/nbd/block-device.js';
import { NbdServer } from '../../../src/nbd/server.js';
import { NBD, RawNbdClient, u16, u32, u64 } from '../../helpers/agent/raw-nbd-client.js';

const MiB = 1024 * 1024;
const SIZE = 4 * MiB;

/**
 * Refuge's NBD server spoken to byte by byte over raw sockets: the handshake options, every command, and the bad
 * input of reliability R8 (out-of-range offsets, oversize lengths, unknown commands and flags, garbage, abrupt
 * disconnects). Each bad-input test ends by checking that another client still reads and writes correct bytes.
 */
describe('nbd server (raw sockets)', () => {
  let dir: string;
  let image: string;
  let device: FileBlockDevice;
  let server: NbdServer;
  let socketPath: string;
  const clients: RawNbdClient[] = [];

  const attach = async (name = '') => {
    const c = await RawNbdClient.attach(socketPath, name);
    clients.push(c);
    return c;
  };
  const connect = async () => {
    const c = await RawNbdClient.connect(socketPath);
    clients.push(c);
    return c;
  };
  /** A second, well-behaved client writes and reads back bytes: the server is still serving correctly. */
  const anotherClientStillWorks = async () => {
    const c = await attach();
    const data = randomBytes(8192);
    c.request(NBD.cmd.write, 900n, 3 * MiB, data.length, 0, data);
    expect((await c.reply()).error).toBe(0);
    c.request(NBD.cmd.read, 901n, 3 * MiB, data.length);
    const r = await c.reply(data.length);
    expect(r.handle).toBe(901n);
    expect(r.data.equals(data)).toBe(true);
  };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'refuge-nbd-'));
    image = join(dir, 'disk.raw');
    await writeFile(image, '');
    await truncate(image, SIZE);
    device = FileBlockDevice.open(image);
    socketPath = join(dir, 'nbd.sock');
    server = await NbdServer.start({ listen: { socketPath }, exports: [{ name: 'disk0', description: 'test disk', device }] });
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await server.close();
    device.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses a socket path too long for a unix socket address, naming the fix', async () => {
    await expect(NbdServer.start({ listen: { socketPath: join(dir, 'x'.repeat(120)) }, exports: [{ name: 'd', device }] })).rejects.toThrow(/longer than the 107 bytes/);
  });

  describe('handshake', () => {
    it('greets with NBDMAGIC, IHAVEOPT and the fixed newstyle and no-zeroes flags', async () => {
      const c = await connect();
      const g = await c.read(18);
      expect(g.subarray(0, 8).toString('latin1')).toBe('NBDMAGIC');
      expect(g.subarray(8, 16).toString('latin1')).toBe('IHAVEOPT');
      expect(g.readUInt16BE(16)).toBe(3);
    });

    it('lists the export, describes it with OPT_INFO, refuses unknown exports and options, and stays open', async () => {
      const c = await connect();
      await c.read(18);
      c.send(u32(1));
      c.option(NBD.opt.list);
      const server1 = await c.optionReply();
      expect(server1.type).toBe(NBD.rep.server);
      expect(server1.data.readUInt32BE(0)).toBe(5);
      expect(server1.data.subarray(4).toString()).toBe('disk0test disk');
      expect((await c.optionReply()).type).toBe(NBD.rep.ack);

      c.option(NBD.opt.list, Buffer.from('x'));
      expect((await c.optionReply()).type).toBe(NBD.rep.errInvalid);

      c.option(NBD.opt.info, Buffer.concat([u32(5), Buffer.from('disk0'), u16(2), u16(3), u16(1)]));
      const infos = [await c.optionReply(), await c.optionReply(), await c.optionReply()];
      expect(infos.map((r) => [r.type, r.data.readUInt16BE(0)])).toEqual([[NBD.rep.info, 0], [NBD.rep.info, 1], [NBD.rep.info, 3]]);
      expect(Number(infos[0]?.data.readBigUInt64BE(2))).toBe(SIZE);
      expect((infos[0]?.data.readUInt16BE(10) ?? 0) & 0b1101101).toBe(0b1101101); // flags, flush, fua, trim, zeroes
      expect(infos[1]?.data.subarray(2).toString()).toBe('disk0');
      expect([infos[2]?.data.readUInt32BE(2), infos[2]?.data.readUInt32BE(6), infos[2]?.data.readUInt32BE(10)]).toEqual([1, 4096, 32 * MiB]);
      expect((await c.optionReply()).type).toBe(NBD.rep.ack);

      c.option(NBD.opt.go, Buffer.concat([u32(5), Buffer.from('disk9'), u16(0)]));
      expect((await c.optionReply()).type).toBe(NBD.rep.errUnknown);
      c.option(NBD.opt.go, Buffer.concat([u32(500), Buffer.from('disk0'), u16(0)])); // name length beyond the data
      expect((await c.optionReply()).type).toBe(NBD.rep.errInvalid);
      c.option(NBD.opt.structuredReply);
      expect((await c.optionReply()).type).toBe(NBD.rep.errUnsup);
      c.option(NBD.opt.startTls);
      expect((await c.optionReply()).type).toBe(NBD.rep.errPolicy);
      c.option(0xdead);
      expect((await c.optionReply()).type).toBe(NBD.rep.errUnsup);

      c.option(NBD.opt.go, Buffer.concat([u32(0), u16(0)]));
      expect((await c.optionReply()).type).toBe(NBD.rep.info);
      expect((await c.optionReply()).type).toBe(NBD.rep.ack);
      c.request(NBD.cmd.read, 1n, 0, 512);
      expect((await c.reply(512)).data.equals(Buffer.alloc(512))).toBe(true);
    });

    it('answers OPT_EXPORT_NAME with size and flags (no zeroes when negotiated), and hangs up on an unknown name', async () => {
      const c = await connect();
      await c.read(18);
      c.send(u32(3));
      c.option(NBD.opt.exportName, Buffer.from('disk0'));
      const r = await c.read(10);
      expect(Number(r.readBigUInt64BE(0))).toBe(SIZE);
      c.request(NBD.cmd.read, 7n, 0, 16);
      expect((await c.reply(16)).handle).toBe(7n); // no 124 zero bytes came before the reply

      const d = await connect();
      await d.read(18);
      d.send(u32(1));
      d.option(NBD.opt.exportName, Buffer.from('nope'));
      await d.closed;
      await anotherClientStillWorks();
    });

    it('acknowledges OPT_ABORT and closes', async () => {
      const c = await connect();
      await c.read(18);
      c.send(u32(1));
      c.option(NBD.opt.abort);
      expect((await c.optionReply()).type).toBe(NBD.rep.ack);
      await c.closed;
    });

    it('hangs up on garbage handshakes: unknown client flags, wrong option magic, oversized option data', async () => {
      const flags = await connect();
      await flags.read(18);
      flags.send(u32(0x80));
      const magic = await connect();
      await magic.read(18);
      magic.send(u32(1), Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      const huge = await connect();
      await huge.read(18);
      huge.send(u32(1), u64(0x49484156454f5054n), u32(NBD.opt.go), u32(0x7fffffff));
      await Promise.all([flags.closed, magic.closed, huge.closed]);
      await anotherClientStillWorks();
    });
  });

  describe('transmission', () => {
    it('writes, reads, flushes, zeroes and trims, with FUA, as the file shows', async () => {
      const c = await attach();
      const data = randomBytes(64 * 1024);
      c.request(NBD.cmd.write, 1n, MiB + 512, data.length, 1 /* FUA */, data);
      expect(await c.reply()).toMatchObject({ error: 0, handle: 1n });
      c.request(NBD.cmd.read, 2n, MiB + 512, data.length);
      expect((await c.reply(data.length)).data.equals(data)).toBe(true);
      c.request(NBD.cmd.writeZeroes, 3n, MiB + 4096, 4096, 2 /* NO_HOLE */);
      c.request(NBD.cmd.trim, 4n, 0, SIZE);
      c.request(NBD.cmd.flush, 5n, 0, 0);
      expect((await Promise.all([c.reply(), c.reply(), c.reply()])).map((r) => [r.handle, r.error])).toEqual([[3n, 0], [4n, 0], [5n, 0]]);
      const file = await readFile(image);
      const expected = Buffer.alloc(SIZE);
      data.copy(expected, MiB + 512);
      expected.fill(0, MiB + 4096, MiB + 8192);
      expect(file.equals(expected)).toBe(true);
      c.request(NBD.cmd.disc, 6n, 0, 0);
      await c.closed;
    });

    it('answers a pipeline of requests in order with their handles', async () => {
      const c = await attach();
      const writes = Array.from({ length: 64 }, (_, i) => ({ handle: BigInt(1000 + i), offset: i * 8192, data: randomBytes(8192) }));
      c.send(...writes.map((w) => Buffer.concat([u32(0x25609513), u16(0), u16(1), u64(w.handle), u64(BigInt(w.offset)), u32(8192), w.data])));
      for (const w of writes) expect(await c.reply()).toMatchObject({ error: 0, handle: w.handle });
      c.request(NBD.cmd.read, 5n, 0, 64 * 8192);
      expect((await c.reply(64 * 8192)).data.equals(Buffer.concat(writes.map((w) => w.data)))).toBe(true);
    });

    it('replies with errors to out-of-range, zero-length, oversized, unknown and flag-abusing requests, and keeps serving', async () => {
      const c = await attach();
      const cases: [string, () => void, number][] = [
        ['write past the end', () => c.request(NBD.cmd.write, 1n, SIZE - 512, 1024, 0, randomBytes(1024)), NBD.errno.ENOSPC],
        ['read past the end', () => c.request(NBD.cmd.read, 2n, SIZE, 512), NBD.errno.EINVAL],
        ['read at offset 2^64-1', () => c.request(NBD.cmd.read, 3n, 0xffffffffffffffffn, 512), NBD.errno.EINVAL],
        ['zeroes wrapping past 2^64', () => c.request(NBD.cmd.writeZeroes, 4n, 0xfffffffffffff000n, 0x2000), NBD.errno.ENOSPC],
        ['trim past the end', () => c.request(NBD.cmd.trim, 5n, SIZE, 1), NBD.errno.ENOSPC],
        ['zero-length read', () => c.request(NBD.cmd.read, 6n, 0, 0), NBD.errno.EINVAL],
        ['read of 64 MiB', () => c.request(NBD.cmd.read, 7n, 0, 64 * MiB), NBD.errno.EINVAL],
        ['unknown command 99', () => c.request(99, 8n, 0, 512), NBD.errno.EINVAL],
        ['block status (not negotiated)', () => c.request(7, 9n, 0, 512), NBD.errno.EINVAL],
        ['unknown command flag', () => c.request(NBD.cmd.read, 10n, 0, 512, 0x40), NBD.errno.EINVAL],
      ];
      for (const [what, send, errno] of cases) {
        send();
        const r = await c.reply();
        expect([what, r.error, r.handle]).toEqual([what, errno, BigInt(cases.findIndex((x) => x[0] === what) + 1)]);
      }
      c.request(NBD.cmd.read, 11n, 0, 512);
      expect((await c.reply(512)).error).toBe(0);
      expect((await readFile(image)).equals(Buffer.alloc(SIZE))).toBe(true); // nothing was written by the bad requests
    });

    it('drops the payload of a 40 MiB write and answers EINVAL; hangs up on a 1 GiB write', async () => {
      const c = await attach();
      const payload = Buffer.alloc(40 * MiB, 0xee);
      c.request(NBD.cmd.write, 1n, 0, payload.length, 0, payload);
      expect(await c.reply()).toMatchObject({ error: NBD.errno.EINVAL, handle: 1n });
      c.request(NBD.cmd.read, 2n, 0, 4096);
      expect((await c.reply(4096)).data.equals(Buffer.alloc(4096))).toBe(true);

      c.request(NBD.cmd.write, 3n, 0, 1024 * MiB, 0, Buffer.alloc(1024));
      await c.closed;
      await anotherClientStillWorks();
    });

    it('hangs up on a wrong request magic and on abrupt disconnects, while another client keeps working', async () => {
      const bad = await attach();
      bad.send(Buffer.from('this is not an nbd request header'));
      const midPayload = await attach();
      midPayload.request(NBD.cmd.write, 1n, 0, 65536, 0, randomBytes(1000)); // then vanish mid-payload
      midPayload.close();
      const midHeader = await attach();
      midHeader.send(u32(0x25609513), u16(0));
      midHeader.close();
      await Promise.all([bad.closed, midPayload.closed, midHeader.closed]);
      await anotherClientStillWorks();
      expect((await readFile(image)).subarray(0, 65536).equals(Buffer.alloc(65536))).toBe(true);
    });

    it('refuses writes to a read-only export with EPERM', async () => {
      const ro = FileBlockDevice.open(image, { readOnly: true });
      const path = join(dir, 'ro.sock');
      const roServer = await NbdServer.start({ listen: { socketPath: path }, exports: [{ name: 'ro', device: ro }] });
      try {
        const c = await RawNbdClient.attach(path);
        clients.push(c);
        c.request(NBD.cmd.write, 1n, 0, 512, 0, randomBytes(512));
        c.request(NBD.cmd.writeZeroes, 2n, 0, 512);
        expect((await Promise.all([c.reply(), c.reply()])).map((r) => r.error)).toEqual([NBD.errno.EPERM, NBD.errno.EPERM]);
      } finally {
        await roServer.close();
        ro.close();
      }
    });

    it('serves devices that answer asynchronously, and maps their failures to errno replies', async () => {
      const backing = FileBlockDevice.open(image);
      let failNext: string | undefined;
      const slow: BlockDevice = {
        sizeBytes: backing.sizeBytes,
        readOnly: false,
        read: async (t, o) => {
          await new Promise((r) => setTimeout(r, 5));
          backing.read(t, o);
        },
        write: async (d, o, f) => {
          await new Promise((r) => setTimeout(r, 5));
          if (failNext) throw Object.assign(new Error('injected'), { code: failNext });
          await backing.write(d, o, f);
        },
        writeZeroes: (o, l, f) => backing.writeZeroes(o, l, f),
        trim: () => undefined,
        flush: async () => undefined,
      };
      const path = join(dir, 'slow.sock');
      const slowServer = await NbdServer.start({ listen: { socketPath: path }, exports: [{ name: 'slow', device: slow }] });
      try {
        const c = await RawNbdClient.attach(path);
        clients.push(c);
        const data = randomBytes(4096);
        c.request(NBD.cmd.write, 1n, 8192, 4096, 0, data);
        c.request(NBD.cmd.read, 2n, 8192, 4096);
        expect((await c.reply()).error).toBe(0);
        expect((await c.reply(4096)).data.equals(data)).toBe(true);
        // Writes may overlap; a read sent after them waits for all of them.
        const parts = [randomBytes(4096), randomBytes(4096), randomBytes(4096)];
        parts.forEach((p, i) => c.request(NBD.cmd.write, BigInt(10 + i), 65536 + i * 4096, 4096, 0, p));
        c.request(NBD.cmd.read, 13n, 65536, 3 * 4096);
        const replies = [await c.reply(), await c.reply(), await c.reply()];
        expect(replies.map((r) => r.handle).sort()).toEqual([10n, 11n, 12n]);
        expect((await c.reply(3 * 4096)).data.equals(Buffer.concat(parts))).toBe(true);
        failNext = 'ENOSPC';
        c.request(NBD.cmd.write, 3n, 0, 512, 0, randomBytes(512));
        expect((await c.reply()).error).toBe(NBD.errno.ENOSPC);
        failNext = 'EBADF';
        c.request(NBD.cmd.write, 4n, 0, 512, 0, randomBytes(512));
        expect((await c.reply()).error).toBe(NBD.errno.EIO);
      } finally {
        await slowServer.close();
        backing.close();
      }
    });

    it('drops a request parked behind writes in flight when the connection closes: nothing changes the disk after', async () => {
      const calls: string[] = [];
      let finish!: () => void;
      const slow: BlockDevice = {
        sizeBytes: 4 * MiB,
        readOnly: false,
        read: () => undefined,
        write: () => {
          calls.push('write');
          return new Promise<void>((r) => (finish = r));
        },
        writeZeroes: () => void calls.push('zeroes'),
        trim: () => undefined,
        flush: () => void calls.push('flush'),
      };
      const path = join(dir, 'parked.sock');
      const server = await NbdServer.start({ listen: { socketPath: path }, exports: [{ name: 'parked', device: slow }] });
      const c = await RawNbdClient.attach(path);
      clients.push(c);
      c.request(NBD.cmd.write, 1n, 0, 4096, 0, Buffer.alloc(4096, 1));
      c.request(NBD.cmd.writeZeroes, 2n, 0, 4096); // waits for the write before it
      while (calls.length === 0) await new Promise((r) => setTimeout(r, 5));
      await new Promise((r) => setTimeout(r, 20)); // the zeroing has arrived and is parked
      await server.close(); // the agent stopping: its clean stop takes stock of the disk now
      finish();
      await new Promise((r) => setTimeout(r, 20));
      expect(calls).toEqual(['write']);
    });

    it('holds at most 16 MiB of asynchronous writes of one connection at once, and answers all of them', async () => {
      let running = 0;
      let most = 0;
      // Writes wait at a gate the test opens: the server reads ahead until the limit stops it, however slow the machine.
      let open!: () => void;
      const gate = new Promise<void>((r) => (open = r));
      const slow: BlockDevice = {
        sizeBytes: 64 * MiB,
        readOnly: false,
        read: () => undefined,
        write: async (d) => {
          running += d.reduce((n, p) => n + p.length, 0);
          most = Math.max(most, running);
          await gate;
          running -= d.reduce((n, p) => n + p.length, 0);
        },
        writeZeroes: () => undefined,
        trim: () => undefined,
        flush: () => undefined,
      };
      const path = join(dir, 'bounded.sock');
      const server = await NbdServer.start({ listen: { socketPath: path }, exports: [{ name: 'bounded', device: slow }] });
      try {
        const c = await RawNbdClient.attach(path);
        clients.push(c);
        for (let i = 0; i < 12; i++) c.request(NBD.cmd.write, BigInt(i), i * 4 * MiB, 4 * MiB, 0, Buffer.alloc(4 * MiB, i));
        await vi.waitFor(() => expect(running).toBeGreaterThanOrEqual(16 * MiB), { timeout: 20_000, interval: 5 });
        await new Promise((r) => setTimeout(r, 200)); // room for a server that would read past the limit to do so
        expect(most).toBe(16 * MiB); // four of 4 MiB: the limit is reached, never passed
        open();
        const replies = [];
        for (let i = 0; i < 12; i++) replies.push(await c.reply());
        expect(replies.map((r) => r.error)).toEqual(new Array(12).fill(0));
        expect(most).toBe(16 * MiB);
      } finally {
        open();
        await server.close();
      }
    });
  });
});
