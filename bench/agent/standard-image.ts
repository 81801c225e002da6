import { createCipheriv } from 'node:crypto';
import { open, stat } from 'node:fs/promises';

const MiB = 1024 * 1024;
const SENTENCE = 'The replica at the recovery site must hold every byte the primary wrote before the cut, no more and no less. ';

/** Deterministic pseudo-random bytes (AES-128-CTR keystream of a fixed key): "random" blocks that rebuild identically. */
export function keystream(seed: number, length: number): Buffer {
  const iv = Buffer.alloc(16);
  iv.writeUInt32BE(seed >>> 0, 0);
  const cipher = createCipheriv('aes-128-ctr', Buffer.alloc(16, 7), iv);
  return cipher.update(Buffer.alloc(length));
}

/**
 * The standard disk image of ../shared/docs/performance.md: 1 MiB blocks cycling 4 random, 2 zero, 2 text-like (a
 * repeated English sentence with digits, rotated per block). Built once per size and reused when already there.
 */
export async function ensureStandardImage(path: string, sizeBytes: number): Promise<void> {
  const existing = await stat(path).catch(() => undefined);
  if (existing?.size === sizeBytes) return;
  const file = await open(path, 'w');
  try {
    await file.truncate(sizeBytes);
    for (let block = 0; block * MiB < sizeBytes; block++) {
      const kind = block % 8;
      if (kind === 4 || kind === 5) continue; // zero blocks stay holes
      const data = kind < 4 ? keystream(block, MiB) : textBlock(block);
      await file.write(data, 0, Math.min(MiB, sizeBytes - block * MiB), block * MiB);
    }
    await file.sync();
  } finally {
    await file.close();
  }
}

function textBlock(block: number): Buffer {
  const line = `${SENTENCE}[block ${block}] `;
  const rotated = line.slice(block % line.length) + line.slice(0, block % line.length);
  return Buffer.from(rotated.repeat(Math.ceil(MiB / rotated.length)).slice(0, MiB), 'latin1');
}

/** "1% churn": 1% of the image in random 64 KiB-aligned blocks of 64 KiB of random bytes (320 blocks at 2 GiB). */
export function onePercentChurn(sizeBytes: number, seed = 1): [number, Buffer][] {
  return randomWrites(sizeBytes, 64 * 1024, Math.round(sizeBytes / 100 / (64 * 1024)), seed);
}

/** `count` distinct `blockBytes`-aligned blocks of `blockBytes` random bytes, chosen by a seeded generator. */
export function randomWrites(sizeBytes: number, blockBytes: number, count: number, seed: number): [number, Buffer][] {
  const slots = Math.floor(sizeBytes / blockBytes);
  const chosen = new Set<number>();
  let x = (seed * 2654435761) >>> 0 || 1;
  while (chosen.size < Math.min(count, slots)) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    chosen.add(x % slots);
  }
  const data = keystream(1_000_000 + seed, count * blockBytes);
  return [...chosen].map((slot, i) => [slot * blockBytes, data.subarray(i * blockBytes, (i + 1) * blockBytes)]);
}
