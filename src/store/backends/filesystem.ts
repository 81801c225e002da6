import { open, readFile, readdir, unlink, stat, mkdir } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { writeFileAtomic } from '../../core/atomic-file.js';
import { RefugeError, classifySystemError } from '../../core/errors.js';
import { assertValidKey, assertValidRange, type StoreBackend } from '../backend.js';

/** Errors that mean "no object here": absent, or a path through something that is not a folder. */
const MISSING = new Set(['ENOENT', 'ENOTDIR']);

/** A store backend on a local (or mounted) filesystem: one file per object under `root`. */
export class FilesystemBackend implements StoreBackend {
  readonly location: string;

  constructor(private readonly root: string) {
    this.location = pathToFileURL(root).href;
  }

  static async create(root: string): Promise<FilesystemBackend> {
    await mkdir(root, { recursive: true });
    return new FilesystemBackend(root);
  }

  private path(key: string): string {
    assertValidKey(key);
    return join(this.root, ...key.split('/'));
  }

  localFile(key: string): string {
    return this.path(key);
  }

  async get(key: string): Promise<Buffer> {
    const path = this.path(key);
    try {
      return await readFile(path);
    } catch (err) {
      // A folder at the key's path means the key is only the beginning of other keys: no such object.
      if ((err as NodeJS.ErrnoException).code === 'EISDIR') throw new RefugeError('not_found', `store object '${key}' not found at ${this.location}`);
      throw this.fail(err, 'read', key);
    }
  }

  async getRange(key: string, offset: number, length: number, into?: Uint8Array): Promise<Buffer> {
    const path = this.path(key);
    assertValidRange(offset, length);
    try {
      const file = await open(path, 'r');
      try {
        const out = into && into.byteLength >= length ? Buffer.from(into.buffer, into.byteOffset, length) : Buffer.allocUnsafe(length);
        let done = 0;
        while (done < length) {
          const { bytesRead } = await file.read(out, done, length - done, offset + done);
          if (bytesRead === 0) break;
          done += bytesRead;
        }
        return done === length ? out : out.subarray(0, done);
      } finally {
        await file.close();
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EISDIR') throw new RefugeError('not_found', `store object '${key}' not found at ${this.location}`);
      throw this.fail(err, 'read', key);
    }
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    const path = this.path(key);
    try {
      await writeFileAtomic(path, data);
    } catch (err) {
      throw this.fail(err, 'write', key);
    }
  }

  async exists(key: string): Promise<boolean> {
    const path = this.path(key);
    try {
      return (await stat(path)).isFile();
    } catch (err) {
      if (MISSING.has((err as NodeJS.ErrnoException).code ?? '')) return false;
      throw this.fail(err, 'stat', key);
    }
  }

  async list(prefix: string): Promise<string[]> {
    // Walk only the directory the prefix points into, then filter: prefixes are short paths like "points/rep_x/".
    const slash = prefix.lastIndexOf('/');
    const dirKey = slash < 0 ? '' : prefix.slice(0, slash);
    const start = dirKey === '' ? this.root : this.path(dirKey); // validates the prefix's folder part
    const keys: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (err) {
        if (MISSING.has((err as NodeJS.ErrnoException).code ?? '')) return;
        throw this.fail(err, 'list', prefix);
      }
      for (const e of entries) {
        if (e.name.startsWith('.')) continue; // temporary files of in-flight atomic writes
        const full = join(dir, e.name);
        if (e.isDirectory()) await walk(full);
        else keys.push(relative(this.root, full).split(sep).join('/'));
      }
    };
    await walk(start);
    return keys.filter((k) => k.startsWith(prefix)).sort();
  }

  async delete(key: string): Promise<void> {
    const path = this.path(key);
    try {
      await unlink(path);
    } catch (err) {
      if (!MISSING.has((err as NodeJS.ErrnoException).code ?? '') && (err as NodeJS.ErrnoException).code !== 'EISDIR') {
        throw this.fail(err, 'delete', key);
      }
    }
  }

  private fail(err: unknown, op: string, key: string): RefugeError {
    if (err instanceof RefugeError) return err;
    const code = classifySystemError(err) ?? 'unavailable';
    const hint = code === 'resource_exhausted' ? `free space where the store lives (${this.location})` : undefined;
    return new RefugeError(code, `store ${op} of '${key}' at ${this.location} failed: ${(err as Error).message}`, {
      cause: err,
      ...(hint ? { hint } : {}),
      retryable: code === 'unavailable',
    });
  }
}
