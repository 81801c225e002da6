import { randomBytes } from 'node:crypto';

/**
 * Identifiers are a short kind prefix, the creation time in base 36 (so ids sort by creation time as strings)
 * and 8 random base-32 characters: `job_lq3x9k2a_7h2kd9xq`.
 */
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';

export function newId(prefix: string, at: Date = new Date()): string {
  const time = at.getTime().toString(36).padStart(9, '0');
  const bytes = randomBytes(8);
  let rand = '';
  for (const b of bytes) rand += ALPHABET[b & 31];
  return `${prefix}_${time}_${rand}`;
}

/** The pattern every generated id matches; used to validate ids in paths before they touch storage. */
export const ID_PATTERN = '^[a-z]{1,8}_[0-9a-z]{9}_[a-z2-7]{8}$';
