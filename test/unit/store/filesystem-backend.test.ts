import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FilesystemBackend } from '../../../src/store/backends/filesystem.js';
import { describeBackendContract } from './backend-contract.js';
import { makeTempDir, type TempDir } from './fixtures.js';

describeBackendContract('filesystem', async () => {
  const dir = await makeTempDir();
  return { backend: await FilesystemBackend.create(join(dir.path, 'store')), cleanup: dir.cleanup };
});

/** Every file under `root`, hidden ones included, as slash-separated relative paths. */
async function allFiles(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => relative(root, join(e.parentPath, e.name)).split(sep).join('/'))
    .sort();
}

describe('FilesystemBackend', () => {
  let dir: TempDir;
  let root: string;
  let backend: FilesystemBackend;

  beforeEach(async () => {
    dir = await makeTempDir();
    root = join(dir.path, 'nested', 'store'); // create() must make missing parents
    backend = await FilesystemBackend.create(root);
  });
  afterEach(async () => {
    await dir.cleanup();
  });

  it('stores each object as one file at its key path (the layout operators and the corruption tests rely on)', async () => {
    await backend.put('chunks/ab/abcd', Buffer.from('chunk'));
    expect(await readFile(join(root, 'chunks', 'ab', 'abcd'), 'utf8')).toBe('chunk');
    expect(backend.location).toBe(`file://${root}`);
  });

  it('leaves no temporary files behind after puts, concurrent and repeated ones included', async () => {
    const keys = Array.from({ length: 20 }, (_, i) => `chunks/0${i % 3}/c${i}`);
    await Promise.all(keys.map((k) => backend.put(k, Buffer.from(k))));
    await Promise.all(keys.slice(0, 5).map((k) => backend.put(k, Buffer.from(k)))); // idempotent re-puts
    await Promise.all([1, 2, 3].map(() => backend.put('refuge-store.json', Buffer.from('{}'))));
    expect(await allFiles(root)).toEqual([...keys, 'refuge-store.json'].sort());
  });

  it('does not list files and folders named like in-flight writes (leading dot)', async () => {
    await backend.put('chunks/ab/abcd', Buffer.from('real'));
    // What writeFileAtomic leaves while it runs, or after a crash before its rename.
    await writeFile(join(root, 'chunks', 'ab', '.abcd.0123456789ab.tmp'), 'half');
    await writeFile(join(root, '.refuge-store.json.a1b2c3d4e5f6.tmp'), '{');
    await mkdir(join(root, '.trash'), { recursive: true });
    await writeFile(join(root, '.trash', 'old'), 'x');
    expect(await backend.list('')).toEqual(['chunks/ab/abcd']);
    expect(await backend.list('chunks/ab/')).toEqual(['chunks/ab/abcd']);
  });

  it('never touches a path outside its root, whatever the key', async () => {
    for (const key of ['../escape', '../../escape', 'a/../../escape']) {
      await expect(backend.put(key, Buffer.from('x'))).rejects.toThrow(/invalid store key/);
    }
    expect(await readdir(join(dir.path, 'nested'))).toEqual(['store']);
    expect(await readdir(dir.path)).toEqual(['nested']);
  });
});
