import { readFile, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { RefugeError } from '../core/errors.js';

/** Size of a disk image file or block device (stat reports 0 for block devices; sysfs knows their size). */
export async function diskSize(path: string): Promise<number> {
  const s = await stat(path).catch((err: unknown) => {
    throw RefugeError.wrap(err, `disk ${path}`, 'invalid_argument');
  });
  if (s.isFile()) return s.size;
  if (s.isBlockDevice()) {
    const sectors = await readFile(`/sys/class/block/${basename(path)}/size`, 'utf8');
    return Number(sectors.trim()) * 512;
  }
  throw new RefugeError('invalid_argument', `${path} is neither a disk image file nor a block device`);
}
