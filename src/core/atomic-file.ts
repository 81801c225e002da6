import { open, rename, mkdir, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join, basename } from 'node:path';
import { randomBytes } from 'node:crypto';

/**
 * Writes `data` (or its pieces, one after the other: no copy of the whole) to `path` so that a reader sees either the
 * old file or the complete new one, even across a crash or power loss: write a temporary file in the same directory,
 * fsync it, rename it over the target, then fsync the directory so the rename itself is durable.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string | readonly Uint8Array[]): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  let handle = await open(tmp, 'wx', 0o640);
  try {
    let at = 0;
    for (const piece of Array.isArray(data) ? (data as readonly Uint8Array[]) : [data as Uint8Array | string]) at += await writeAll(handle, piece, path, at);
    await handle.sync();
    await handle.close();
    handle = undefined as never;
    await rename(tmp, path);
  } catch (err) {
    await handle?.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fsyncDir(dir);
}

/**
 * Writes all of `data` in as few calls as the kernel allows. Not FileHandle.writeFile: it writes in 512 KiB pieces,
 * one trip through libuv's thread pool and back through the event loop each, 32 trips for a 16 MiB pack, each
 * waiting its turn on a busy event loop (a replicator receiving uploads). P3 rounds (docs/benchmarks.md): a commit's
 * wait for the packs still being written went from 41-68 ms to 19-56 ms.
 */
async function writeAll(handle: FileHandle, data: Uint8Array | string, path: string, position: number): Promise<number> {
  const bytes = typeof data === 'string' ? Buffer.from(data) : data;
  let done = 0;
  while (done < bytes.byteLength) {
    const { bytesWritten } = await handle.write(bytes, done, Math.min(bytes.byteLength - done, MAX_WRITE), position + done);
    if (bytesWritten === 0) throw new Error(`writing ${path}: the kernel wrote nothing (${done} of ${bytes.byteLength} bytes written)`);
    done += bytesWritten;
  }
  return done;
}

/** The most one write call takes: Node refuses lengths of 2 GiB and more, and Linux writes at most about 2 GiB. */
const MAX_WRITE = 1 << 30;

export async function fsyncDir(dir: string): Promise<void> {
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}
