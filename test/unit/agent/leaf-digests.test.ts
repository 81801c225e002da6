import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LeafDigestFile, leafRanges, zeroDigests } from '../../../src/agent/leaf-digests.js';
import { LEAF_SIZE, blobName, leafDigests } from '../../../src/store/chunks.js';

const K = 1024;

describe('leaf digests (store format 3, the agent side)', () => {
  it('a chunk\'s written runs become whole 16 KiB leaves, merged, within the chunk', () => {
    expect(leafRanges([[8192, 12 * K]], 256 * K)).toEqual([[0, 32 * K]]);
    expect(leafRanges([[100_000, 10], [0, 1], [16 * K, 1]], 256 * K)).toEqual([[0, 32 * K], [98_304, 16 * K]]);
    expect(leafRanges([[250 * K, 6 * K]], 250 * K + 100)).toEqual([[240 * K, 10 * K + 100]]); // a short last chunk
    expect(leafRanges([], 256 * K)).toEqual([]);
  });

  it('gives a chunk\'s digests only while they name it as remembered; a zero chunk needs no file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'leaf-digests-'));
    try {
      const file = await LeafDigestFile.open(dir, 'disk 0/weird');
      const chunk = randomBytes(256 * K);
      const name = blobName(chunk, 'leaf16');
      expect(await file.forChunk(3, 256 * K, chunk.length, name)).toBeUndefined(); // never recorded
      await file.writeLeaves((3 * 256 * K) / LEAF_SIZE, leafDigests(chunk));
      expect((await file.forChunk(3, 256 * K, chunk.length, name))?.equals(leafDigests(chunk))).toBe(true);
      expect(await file.forChunk(3, 256 * K, chunk.length, blobName(randomBytes(256 * K), 'leaf16'))).toBeUndefined(); // stale
      expect(await file.forChunk(2, 256 * K, chunk.length, name)).toBeUndefined(); // another chunk's place
      expect((await file.forChunk(9, 256 * K, 100, null))?.equals(zeroDigests(100))).toBe(true);
      expect(zeroDigests(LEAF_SIZE * 2).equals(leafDigests(Buffer.alloc(LEAF_SIZE * 2)))).toBe(true);
      await file.close();
      // The file outlives the agent: a restart finds the digests again.
      const again = await LeafDigestFile.open(dir, 'disk 0/weird');
      expect((await again.forChunk(3, 256 * K, chunk.length, name))?.equals(leafDigests(chunk))).toBe(true);
      await again.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
