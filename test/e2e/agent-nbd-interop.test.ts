import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CdpCapture } from '../../src/agent/capture/cdp-capture.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const SIZE = 64 * MiB;
const CHUNK = MiB;

/**
 * Issue 4, must show 4: the agent's NBD export (cdp capture: every write tracked) against NBD clients nobody here
 * wrote: nbdinfo, qemu-io, nbdcopy and fio's nbd engine. Each test checks the bytes the client wrote or read against
 * the image file, and that the agent's next cut lists the chunks the client wrote and reads them back as written.
 * (A real booted qemu guest using the export is the write-order test, agent-write-order.test.ts.)
 */
describe('agent NBD export interoperates with standard NBD clients', () => {
  let dir: string;
  let image: string;
  let socketPath: string;
  let uri: string;
  let capture: CdpCapture;

  /** Cuts, and returns the chunks listed with their bytes at the cut; completes the cut. */
  const cutChunks = async () => {
    const cut = await capture.cut({ chunkSize: CHUNK, everyChunk: false });
    const out = new Map<number, Buffer>();
    const disk = cut.disks[0];
    for (const i of disk?.chunkIndexes ?? []) out.set(i, await (disk?.read(i) as Promise<Buffer>));
    await cut.complete();
    return out;
  };
  const expectCutMatchesImage = async (chunks: Map<number, Buffer>) => {
    const file = await readFile(image);
    for (const [i, bytes] of chunks) expect([i, bytes.equals(file.subarray(i * CHUNK, (i + 1) * CHUNK))]).toEqual([i, true]);
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ragnbd-'));
    image = join(dir, 'disk0.raw');
    await writeFile(image, '');
    await truncate(image, SIZE);
    socketPath = join(dir, 'disk0.sock');
    uri = `nbd+unix:///disk0?socket=${socketPath}`;
    capture = new CdpCapture({ disks: [{ name: 'disk0', path: image, socketPath }], stateDir: join(dir, 'state'), machine: 'interop' });
    await capture.start();
  });
  beforeEach(async () => {
    await cutChunks(); // each test starts from a completed cut
  });
  afterAll(async () => {
    await capture.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('nbdinfo reads the export size, name, description, block sizes and capabilities', async () => {
    const { stdout } = await run('nbdinfo', ['--json', uri]);
    const info = JSON.parse(stdout) as { protocol: string; exports: Record<string, unknown>[] };
    expect(info.protocol).toBe('newstyle-fixed');
    const e = info.exports[0] as Record<string, unknown>;
    expect(e['export-size']).toBe(SIZE);
    expect(e['export-name']).toBe('disk0');
    expect(e.description).toBe('refuge agent: disk disk0 of machine interop');
    expect(e).toMatchObject({ can_flush: true, can_fua: true, can_trim: true, can_zero: true, can_multi_conn: true, is_read_only: false });
    expect(e).toMatchObject({ block_size_minimum: 1, block_size_preferred: 4096, block_size_maximum: 32 * MiB });
    const list = await run('nbdinfo', ['--list', '--json', `nbd+unix:///?socket=${socketPath}`]);
    expect((JSON.parse(list.stdout) as { exports: { 'export-name': string }[] }).exports.map((x) => x['export-name'])).toEqual(['disk0']);
  });

  it('qemu-io writes patterns, zeroes, discards and flushes; the file and the next cut agree', async () => {
    const { stdout } = await run('qemu-io', [
      '-f', 'raw',
      '-c', 'write -P 0xab 1048576 65536',
      '-c', 'write -f -P 0xcd 5242880 4096',
      '-c', 'write -z 1049600 1024',
      '-c', 'discard 20971520 1048576',
      '-c', 'flush',
      '-c', 'read -P 0xab 1048576 1024',
      '-c', 'read -P 0 1049600 1024',
      '-c', 'read -P 0xcd 5242880 4096',
      `nbd:unix:${socketPath}`,
    ]);
    expect(stdout).not.toMatch(/Pattern verification failed|error/i);
    const file = await readFile(image);
    const expected = Buffer.alloc(SIZE);
    expected.fill(0xab, MiB, MiB + 65536);
    expected.fill(0, MiB + 1024, MiB + 2048);
    expected.fill(0xcd, 5 * MiB, 5 * MiB + 4096);
    expect(file.equals(expected)).toBe(true);
    const chunks = await cutChunks();
    expect([...chunks.keys()]).toEqual([1, 5]); // the discard changed nothing, so it is not tracked
    await expectCutMatchesImage(chunks);
  });

  it('nbdcopy copies a file into the export and back out, byte for byte', async () => {
    const source = join(dir, 'source.raw');
    const content = Buffer.alloc(SIZE);
    randomBytes(8 * MiB).copy(content, 16 * MiB);
    randomBytes(MiB).copy(content, 40 * MiB);
    await writeFile(source, content);
    await run('nbdcopy', [source, uri]);
    expect((await readFile(image)).equals(content)).toBe(true);
    const out = join(dir, 'copy.raw');
    await run('nbdcopy', [uri, out]);
    expect((await readFile(out)).equals(content)).toBe(true);
    const chunks = await cutChunks();
    for (const i of [...Array(8).keys()].map((k) => 16 + k).concat([40])) expect(chunks.has(i)).toBe(true);
    await expectCutMatchesImage(chunks);
  });

  it("fio's nbd engine writes random 4 KiB blocks at depth 16 and verifies them; every written chunk is tracked", async () => {
    const { stdout } = await run('fio', [
      '--name=interop', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bs=4k', '--iodepth=16',
      '--size=32M', '--offset=8M', '--verify=crc32c', '--do_verify=1', '--randrepeat=1', '--verify_state_save=0', '--output-format=json',
    ], { maxBuffer: 16 * MiB });
    // fio's nbd engine prints "fio: connected to NBD server" before its JSON report.
    const job = (JSON.parse(stdout.slice(stdout.indexOf('{'))) as { jobs: { error: number; write: { io_bytes: number } }[] }).jobs[0];
    expect(job?.error).toBe(0);
    expect(job?.write.io_bytes).toBe(32 * MiB);
    const chunks = await cutChunks();
    expect([...chunks.keys()]).toEqual([...Array(32).keys()].map((k) => 8 + k)); // all of 8..39 MiB, nothing else
    await expectCutMatchesImage(chunks);
  });
});
