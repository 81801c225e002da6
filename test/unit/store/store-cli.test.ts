import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { buildProgram } from '../../../src/cli/program.js';
import { expectSameBytes, flipByte, makeTempDir, type TempDir } from './fixtures.js';

/** `refuge store` end to end, in process: each command parsed and run as the CLI runs it, output read as JSON. */

let dir: TempDir;
beforeEach(async () => {
  dir = await makeTempDir('refuge-store-cli-');
});
afterEach(async () => {
  vi.restoreAllMocks();
  process.exitCode = 0;
  await dir.cleanup();
});

async function refuge(...args: string[]): Promise<unknown> {
  let out = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += chunk.toString();
    return true;
  });
  try {
    await buildProgram().parseAsync(['node', 'refuge', '--json', ...args]);
  } finally {
    spy.mockRestore();
  }
  return JSON.parse(out) as unknown;
}

describe('refuge store', () => {
  // Both formats: 3 names blobs by leaf digests, which every worker task (import, restore, verify, gc) must use.
  it.each([2, 3])('init, import, points, diff, restore, verify, prune, gc and stats on an encrypted store of format %i', async (format) => {
    const store = join(dir.path, 'store');
    const key = join(dir.path, 'vault.key');
    await writeFile(key, randomBytes(32).toString('hex'));
    const image = join(dir.path, 'disk0.raw');
    const disk = Buffer.concat([randomBytes(3 << 20), Buffer.alloc(2 << 20), Buffer.from('log line 42\n'.repeat(100_000))]);
    await writeFile(image, disk);
    const base = ['--path', store, '--key-file', key];

    expect(await refuge('store', 'init', ...base, '--encrypt', '--chunk-size', '65536', '--format', String(format))).toMatchObject({ format, chunkSize: 65536, encrypted: true });
    const first = (await refuge('store', 'import', ...base, '--replication', 'rep_cli', '--disk', `disk0=${image}`)) as { point: string; changedBytes: number };
    randomBytes(100_000).copy(disk, 1 << 20);
    await writeFile(image, disk);
    const second = (await refuge('store', 'import', ...base, '--replication', 'rep_cli', '--disk', `disk0=${image}`)) as { point: string; changedBytes: number; parentId: string };
    expect(second.parentId).toBe(first.point);
    expect(second.changedBytes).toBe(2 * 65536); // 100,000 bytes at 1 MiB touch two chunks

    expect(((await refuge('store', 'points', ...base, '--replication', 'rep_cli')) as { items: { id: string }[] }).items.map((p) => p.id)).toEqual([first.point, second.point]);
    expect(await refuge('store', 'diff', ...base, '--replication', 'rep_cli', '--from', first.point)).toMatchObject({ disks: [{ disk: 'disk0', ranges: [{ offset: 1 << 20, length: 2 * 65536 }] }] });

    const out = join(dir.path, 'restored.raw');
    await refuge('store', 'restore', ...base, '--replication', 'rep_cli', '--point', 'latest', '--disk', 'disk0', '--out', out);
    expectSameBytes(await readFile(out), disk, 'restored image');

    expect(await refuge('store', 'verify', ...base)).toMatchObject({ points: 2, problems: [] });
    expect(await refuge('store', 'prune', ...base, '--replication', 'rep_cli', '--retention', '1d')).toMatchObject({ pruned: [] });
    expect(await refuge('store', 'gc', ...base, '--grace', '0s')).toMatchObject({ points: 2, damaged: [] });
    expect(await refuge('store', 'stats', ...base)).toMatchObject({ encrypted: true, replications: [{ id: 'rep_cli', points: 2 }] });

    // Bit rot in a pack: verify names it and exits non-zero.
    const { readdir } = await import('node:fs/promises');
    const packs = (await readdir(join(store, 'packs'), { recursive: true, withFileTypes: true })).filter((e) => e.isFile());
    const victim = packs[0] as { parentPath: string; name: string };
    await flipByte(join(victim.parentPath, victim.name), 10);
    const result = (await refuge('store', 'verify', ...base)) as { problems: { object: string }[] };
    expect(result.problems.length).toBeGreaterThan(0);
    expect(result.problems[0]?.object).toContain(victim.name);
    expect(process.exitCode).toBe(3);
  });

  it('refuses a store format it does not write, and creates nothing', async () => {
    const store = join(dir.path, 'store');
    await expect(refuge('store', 'init', '--path', store, '--format', '5')).rejects.toThrow(/--format 5 is not a store format this Refuge writes/);
    const { readdir } = await import('node:fs/promises');
    expect(await readdir(store).catch(() => [])).toEqual([]);
  });

  it('refuses an encrypted store without its key', async () => {
    const store = join(dir.path, 'store');
    const key = join(dir.path, 'vault.key');
    await writeFile(key, randomBytes(32));
    await refuge('store', 'init', '--path', store, '--key-file', key, '--encrypt');
    await expect(refuge('store', 'points', '--path', store)).rejects.toThrow(/encrypted and no vault key/);
  });
});
