import { PackBuilder, packKey, type BlobEntry, type PackInfo } from './pack.js';
import type { ReplicaStore } from './replica-store.js';
import { workerPool } from './worker-pool.js';

/**
 * Checks the blobs of one pack's bytes on the worker threads (decrypt, decompress, hash): for each blob, the problem
 * found, or undefined when it is sound. A blob reaching past the end of the data is "pack is truncated".
 */
export async function checkPackBlobs(store: ReplicaStore, data: Buffer, blobs: readonly BlobEntry[]): Promise<(string | undefined)[]> {
  const reply = await workerPool().run({
    op: 'decode',
    key: store.key,
    naming: store.naming,
    data,
    items: blobs.map((b) => ({ offset: b.offset, length: b.length, flags: b.flags, rawLength: b.rawLength, hash: b.hash })),
    strict: true,
  });
  return reply.items.map((item, i) => {
    if ('problem' in item) return item.problem;
    const b = blobs[i] as BlobEntry;
    return b.offset + b.length > data.length ? 'pack is truncated' : undefined;
  });
}

/**
 * Copies blobs, as they are stored (no recompression), into new packs of the store's pack size: how garbage
 * collection and repair rewrite packs. The caller writes the index file naming `written`, then deletes the old packs.
 */
export class PackRewriter {
  readonly written: PackInfo[] = [];
  private builder = new PackBuilder();

  constructor(private readonly store: ReplicaStore) {}

  async copy(b: BlobEntry, pack: Buffer): Promise<void> {
    this.builder.add(b.type, b.hash, { stored: Buffer.from(pack.subarray(b.offset, b.offset + b.length)), flags: b.flags, rawLength: b.rawLength, ...(b.base ? { base: b.base } : {}) });
    if (this.builder.size >= this.store.config.packSize) await this.flush();
  }

  /** Writes the pack being built, if it holds anything. */
  async flush(): Promise<void> {
    if (this.builder.blobs.length === 0) return;
    const { info, data } = this.builder.finish(this.store.key);
    await this.store.backend.put(packKey(info.id), data);
    this.written.push(info);
    this.builder = new PackBuilder();
  }
}
