import { createCipheriv } from 'node:crypto';
import { open } from 'node:fs/promises';

/**
 * The standard disk image of ../shared/docs/performance.md, built deterministically: 1 MiB blocks cycling 4 random,
 * 2 zero, 2 text-like (a repeated English sentence with digits, rotated per block). Random bytes come from
 * AES-256-CTR under a fixed key (fast and the same on every machine). "1% churn" overwrites 320 random
 * 64 KiB-aligned 64 KiB blocks with random bytes (20 MiB).
 */

const MIB = 1024 * 1024;
const SENTENCE = 'The 7 quick brown foxes jumped over 13 lazy dogs at 4:05 pm on the 21st of May, 2024. ';

/** Deterministic pseudo-random bytes: AES-256-CTR keystream for `label`. */
export function pseudoRandom(label: string, length: number): Buffer {
  const key = Buffer.alloc(32);
  key.write(label);
  return createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(length));
}

function textBlock(i: number): Buffer {
  const rotated = SENTENCE.slice(i % SENTENCE.length) + SENTENCE.slice(0, i % SENTENCE.length);
  return Buffer.from(rotated.repeat(Math.ceil(MIB / rotated.length))).subarray(0, MIB);
}

export async function writeStandardImage(path: string, sizeMiB: number): Promise<void> {
  const file = await open(path, 'w');
  try {
    const random = pseudoRandom('refuge-standard-image', Math.ceil(sizeMiB / 2) * MIB);
    let r = 0;
    for (let i = 0; i < sizeMiB; i++) {
      const kind = i % 8;
      const block = kind < 4 ? random.subarray(r * MIB, ++r * MIB) : kind < 6 ? Buffer.alloc(MIB) : textBlock(i);
      await file.write(block, 0, MIB, i * MIB);
    }
  } finally {
    await file.close();
  }
}

/** Applies "1% churn" (scaled to the image: 320 blocks per 2 GiB) in place; returns the bytes changed. */
export async function applyChurn(path: string, sizeMiB: number, seed: string): Promise<number> {
  const blocks = Math.max(1, Math.round((320 * sizeMiB) / 2048));
  const slots = (sizeMiB * MIB) / (64 * 1024);
  const picks = pseudoRandom(`${seed}-picks`, blocks * 4);
  const data = pseudoRandom(`${seed}-data`, blocks * 64 * 1024);
  const file = await open(path, 'r+');
  try {
    for (let b = 0; b < blocks; b++) {
      const slot = picks.readUInt32LE(b * 4) % slots;
      await file.write(data, b * 64 * 1024, 64 * 1024, slot * 64 * 1024);
    }
  } finally {
    await file.close();
  }
  return blocks * 64 * 1024;
}
