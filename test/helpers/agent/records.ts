import { createHash, randomBytes } from 'node:crypto';

/**
 * The demo guest's record workload (guest/init.sh, refuge.workload=records): record N is 4096 bytes at N*4096; after
 * each record the disk's last 4 KiB (the head) names it, as a database's commit pointer would.
 */
export const RECORD_BYTES = 4096;
const HEADER = /^REFUGE-RECORD (\d{8}) ([0-9a-f]{64})\n$/;
const ACK = /refuge-guest: record (\d+) acked/g;

/**
 * Checks a disk (or its first bytes) against the write-order rule: the records form an unbroken prefix 0..n-1,
 * each intact (header names its own number, payload matches its checksum), and nothing is written after it.
 * Returns n and every violation found (a torn or corrupt record, a record after a gap).
 */
export function checkRecords(disk: Buffer): { prefix: number; problems: string[] } {
  const problems: string[] = [];
  const zero = Buffer.alloc(RECORD_BYTES);
  let prefix = 0;
  let ended = false;
  for (let i = 0; (i + 1) * RECORD_BYTES <= disk.length; i++) {
    const rec = disk.subarray(i * RECORD_BYTES, (i + 1) * RECORD_BYTES);
    if (rec.equals(zero)) {
      ended = true;
      continue;
    }
    if (ended) {
      problems.push(`record ${i} is written after unwritten record ${prefix} (a gap)`);
      continue;
    }
    const m = HEADER.exec(rec.subarray(0, 88).toString('latin1'));
    const payload = rec.subarray(88);
    if (!m || Number(m[1]) !== i || createHash('sha256').update(payload).digest('hex') !== m[2]) {
      problems.push(`record ${i} is torn or corrupt`);
      ended = true;
      continue;
    }
    prefix = i + 1;
  }
  return { prefix, problems };
}

const HEAD = /^REFUGE-HEAD (\d{8})\n/;

/** The record number in the guest's head block (the disk's last 4 KiB), or -1 when no head was written yet. */
export function headRecord(block: Buffer): number {
  const m = HEAD.exec(block.subarray(0, 21).toString('latin1'));
  return m ? Number(m[1]) : -1;
}

/** Record numbers the guest reported acknowledged in `consoleText`. */
export function ackedRecords(consoleText: string): number[] {
  return [...consoleText.matchAll(ACK)].map((m) => Number(m[1]));
}

/** Record `n` as the guest writes it: its header (number, checksum of the payload) and a random payload. */
export function recordBlock(n: number): Buffer {
  const payload = randomBytes(RECORD_BYTES - 88);
  const header = `REFUGE-RECORD ${String(n).padStart(8, '0')} ${createHash('sha256').update(payload).digest('hex')}\n`;
  return Buffer.concat([Buffer.from(header, 'latin1'), payload]);
}
