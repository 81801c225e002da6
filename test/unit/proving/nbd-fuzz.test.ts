import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileBlockDevice } from '../../../src/nbd/block-device.js';
import { NbdServer } from '../../../src/nbd/server.js';
import { NBD, RawNbdClient, u16, u32, u64 } from '../../helpers/agent/raw-nbd-client.js';
import { figure } from '../../helpers/figures.js';
import { fuzzRuns, fuzzTimeoutMs } from '../../helpers/fuzz.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = MiB;
const MAX_REQUEST = 32 * MiB;
const FUA = 1;
const NO_HOLE = 2;
const KNOWN = new Set<number>([NBD.cmd.read, NBD.cmd.write, NBD.cmd.flush, NBD.cmd.trim, NBD.cmd.writeZeroes]);
const WRITES = new Set<number>([NBD.cmd.write, NBD.cmd.trim, NBD.cmd.writeZeroes]);

interface Req {
  type: number;
  flags: number;
  offset: bigint;
  length: number;
  payload?: Buffer;
}

/** The errno the server must answer (src/nbd/protocol.md, "Bad input"), for a device of SIZE bytes. */
function expectedErrno(r: Req, readOnly: boolean): number {
  if (!KNOWN.has(r.type) || (r.flags & ~(FUA | NO_HOLE)) !== 0) return NBD.errno.EINVAL;
  if (r.type === NBD.cmd.flush) return 0;
  const writes = WRITES.has(r.type);
  if (writes && readOnly) return NBD.errno.EPERM;
  if (r.length === 0) return NBD.errno.EINVAL;
  if (r.type === NBD.cmd.read && r.length > MAX_REQUEST) return NBD.errno.EINVAL;
  if (r.offset + BigInt(r.length) > BigInt(SIZE)) return writes ? NBD.errno.ENOSPC : NBD.errno.EINVAL;
  return 0;
}

const header = (r: Req, handle: bigint) => Buffer.concat([u32(0x25609513), u16(r.flags), u16(r.type), u64(handle), u64(r.offset), u32(r.length)]);

// Offsets: inside, at and past the end, and anywhere in u64. Lengths: small, zero, at and past the 32 MiB limit, u32 max.
const offsetArb = fc.oneof(
  { weight: 6, arbitrary: fc.bigInt({ min: 0n, max: BigInt(SIZE) }) },
  { weight: 1, arbitrary: fc.constantFrom(BigInt(SIZE), BigInt(SIZE - 1), 2n ** 63n, 2n ** 64n - 1n) },
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) },
);
const lengthArb = fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 0, max: 64 * KiB }) }, { weight: 1, arbitrary: fc.constantFrom(0, 1, MAX_REQUEST, MAX_REQUEST + 1, 0xffffffff) });
const flagsArb = fc.oneof({ weight: 8, arbitrary: fc.constantFrom(0, FUA, NO_HOLE, FUA | NO_HOLE) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) });
const typeArb = fc.oneof({ weight: 8, arbitrary: fc.constantFrom(NBD.cmd.read, NBD.cmd.write, NBD.cmd.flush, NBD.cmd.trim, NBD.cmd.writeZeroes) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }).filter((t) => t !== NBD.cmd.disc) });
const requestArb: fc.Arbitrary<Req> = fc.record({ type: typeArb, flags: flagsArb, offset: offsetArb, length: lengthArb }).chain((r) =>
  // A WRITE carries its payload (kept small: oversize writes are the deterministic tests' job); nothing else does.
  r.type === NBD.cmd.write ? fc.uint8Array({ minLength: 0, maxLength: 16 * KiB }).map((p) => ({ ...r, length: p.length, payload: Buffer.from(p) })) : fc.constant(r),
);

/**
 * Fuzzing Refuge's NBD server (reliability R8) with generated request streams over real unix sockets: commands of
 * any type and flags, offsets anywhere in u64, lengths up to u32 max, written to the socket in random pieces,
 * pipelined, and cut off mid-request. Every reply is the errno protocol.md promises, with the right handle; every
 * successful read returns exactly the bytes a model of the disk holds; the file equals the model afterwards; and
 * garbage in the handshake or the transmission phase ends only that connection while the server keeps serving.
 */
describe('nbd server fuzzing', () => {
  let dir: string;
  let socketPath: string;
  let server: NbdServer;
  let device: FileBlockDevice;
  let readOnly: FileBlockDevice;
  let model: Buffer;
  let requests = 0;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rproving-nbd-'));
    const image = join(dir, 'disk.raw');
    await writeFile(image, '');
    await truncate(image, SIZE);
    model = Buffer.alloc(SIZE);
    device = FileBlockDevice.open(image);
    readOnly = FileBlockDevice.open(image, { readOnly: true });
    socketPath = join(dir, 'nbd.sock');
    server = await NbdServer.start({ listen: { socketPath }, exports: [{ name: 'disk0', device }, { name: 'ro', device: readOnly }] });
  });
  afterAll(async () => {
    await server.close();
    device.close();
    readOnly.close();
    await rm(dir, { recursive: true, force: true });
    figure('R8', { fuzzedRequests: requests, runs: fuzzRuns(150) * 2 + fuzzRuns(100) });
  });

  /** Writes `bytes` in the pieces `cuts` (fractions) says, yielding between them so the server sees them apart. */
  const sendInPieces = async (c: RawNbdClient, bytes: Buffer, cuts: number[]) => {
    const points = [...new Set(cuts.map((x) => Math.floor(x * bytes.length)))].sort((a, b) => a - b);
    let from = 0;
    for (const p of [...points, bytes.length]) {
      if (p <= from) continue;
      c.send(bytes.subarray(from, p));
      from = p;
      await new Promise((r) => setImmediate(r));
    }
  };
  const noConnectionsLeft = async () => {
    for (let i = 0; i < 200 && server.connectionCount > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(server.connectionCount).toBe(0);
  };

  it.each([
    ['disk0', false],
    ['ro', true],
  ] as const)('answers every generated request on export %s as protocol.md says, with the bytes of the model', async (name, ro) => {
    await fc.assert(
      fc.asyncProperty(fc.array(requestArb, { minLength: 1, maxLength: 80, size: 'max' }), fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 8 }), fc.nat(), async (reqs, cuts, cutAt) => {
        const c = await RawNbdClient.attach(socketPath, name);
        try {
          const bytes = Buffer.concat(reqs.flatMap((r, i) => [header(r, BigInt(i + 1)), r.payload ?? Buffer.alloc(0)]));
          await sendInPieces(c, bytes, cuts);
          for (const [i, r] of reqs.entries()) {
            const errno = expectedErrno(r, ro);
            const reply = await c.reply(r.type === NBD.cmd.read && errno === 0 ? r.length : 0);
            expect(reply.handle).toBe(BigInt(i + 1));
            expect(reply.error, `${JSON.stringify({ ...r, offset: String(r.offset), payload: r.payload?.length })}`).toBe(errno);
            requests++;
            if (errno !== 0) continue;
            const at = Number(r.offset);
            if (r.type === NBD.cmd.read) expect(reply.data.equals(model.subarray(at, at + r.length))).toBe(true);
            if (r.type === NBD.cmd.write) r.payload?.copy(model, at);
            if (r.type === NBD.cmd.writeZeroes) model.fill(0, at, at + r.length);
          }
          // An abrupt disconnect in the middle of a write: nothing of it may reach the disk.
          const partial = Buffer.concat([header({ type: NBD.cmd.write, flags: 0, offset: 0n, length: 4096 }, 999n), Buffer.alloc(100, 0xee)]);
          c.send(partial.subarray(0, 1 + (cutAt % (partial.length - 1))));
        } finally {
          c.close();
        }
        await noConnectionsLeft();
        expect((await readFile(join(dir, 'disk.raw'))).equals(model)).toBe(true);
      }),
      { numRuns: fuzzRuns(150) },
    );
  }, fuzzTimeoutMs(60_000));

  const optionArb = fc.oneof(
    fc.record({ option: fc.constantFrom(NBD.opt.list, NBD.opt.startTls, NBD.opt.structuredReply, 0, 4, 9, 10, 0xdead, 0xffffffff), data: fc.uint8Array({ maxLength: 64 }).map((d) => Buffer.from(d)) }),
    // INFO and GO: name length, name, count and requests, each sometimes inconsistent with the others.
    fc.record({
      option: fc.constantFrom(NBD.opt.info, NBD.opt.go),
      name: fc.constantFrom('', 'disk0', 'ro', 'nope', '../disk0'),
      lengthDelta: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: -3, max: 600 }) }),
      infos: fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 4 }),
      countDelta: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: -1, max: 3 }) }),
    }).map(({ option, name, lengthDelta, infos, countDelta }) => ({
      option,
      data: Buffer.concat([u32(Math.max(0, Buffer.byteLength(name) + lengthDelta)), Buffer.from(name), u16(Math.max(0, infos.length + countDelta)), ...infos.map(u16)]),
    })),
    fc.record({ option: fc.constant(NBD.opt.exportName), data: fc.constantFrom('', 'disk0', 'ro', 'nope').map((n) => Buffer.from(n)) }),
    fc.record({ option: fc.constant(NBD.opt.abort), data: fc.constant(Buffer.alloc(0)) }),
  );

  it('haggles generated option sequences: well-formed replies to each, a hang-up only where the protocol says', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof({ weight: 6, arbitrary: fc.constantFrom(1, 3) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffffff }) }), fc.array(optionArb, { maxLength: 12 }), async (flags, options) => {
        const c = await RawNbdClient.connect(socketPath);
        try {
          await c.read(18);
          c.send(u32(flags));
          if ((flags & ~3) !== 0) return void (await c.closed); // unknown client flags: the protocol says hang up
          for (const { option, data } of options) {
            c.option(option, data);
            requests++;
            if (option === NBD.opt.exportName) {
              if (data.toString() === 'nope') return void (await c.closed);
              const info = await c.read((flags & 2) !== 0 ? 10 : 134);
              expect(Number(info.readBigUInt64BE(0))).toBe(SIZE);
              return await readWorks(c);
            }
            for (;;) {
              const r = await c.optionReply();
              expect(r.option).toBe(option);
              expect([NBD.rep.ack, NBD.rep.server, NBD.rep.info].includes(r.type as 1) || r.type >= 0x80000000).toBe(true);
              if (r.type >= 0x80000000) break;
              if (r.type !== NBD.rep.ack) continue;
              if (option === NBD.opt.abort) return void (await c.closed);
              if (option === NBD.opt.go) return await readWorks(c);
              break;
            }
          }
        } finally {
          c.close();
        }
      }),
      { numRuns: fuzzRuns(150) },
    );
    await noConnectionsLeft();
  }, fuzzTimeoutMs(60_000));

  const readWorks = async (c: RawNbdClient) => {
    c.request(NBD.cmd.read, 77n, 0, 4096);
    const r = await c.reply(4096);
    expect(r.handle).toBe(77n);
    expect(r.data.equals(model.subarray(0, 4096))).toBe(true);
  };

  it('survives garbage at any point of a connection: only that connection ends, others keep reading right bytes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.boolean(), fc.uint8Array({ minLength: 1, maxLength: 256 }), async (attached, garbage) => {
        const bad = attached ? await RawNbdClient.attach(socketPath) : await RawNbdClient.connect(socketPath);
        bad.send(Buffer.from(garbage));
        await new Promise((r) => setImmediate(r));
        const good = await RawNbdClient.attach(socketPath, 'disk0');
        try {
          await readWorks(good);
          requests += 2;
        } finally {
          good.close();
          bad.close();
        }
      }),
      { numRuns: fuzzRuns(100) },
    );
    await noConnectionsLeft();
  }, fuzzTimeoutMs(60_000));
});
