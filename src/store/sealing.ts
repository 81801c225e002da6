import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { RefugeError } from '../core/errors.js';

/**
 * Sealing: how every store object other than the config is protected at rest.
 * - Plain stores append the SHA-256 of the bytes (32 bytes), so any flipped bit or cut is detected.
 * - Encrypted stores use AES-256-GCM under the store's data key: 12-byte random nonce, ciphertext, 16-byte tag;
 *   the tag detects damage as well as tampering.
 * The data key is random per store and kept in `refuge-store.json` wrapped (AES-256-GCM) under the vault key, so a
 * vault key can be rotated by rewrapping, and a wrong key is recognised by its id before any object is read.
 */

const NONCE = 12;
const TAG = 16;
const SUM = 32;

/** The open data key of an encrypted store, or null for a plain store. */
export type DataKey = Buffer | null;

export function seal(data: Uint8Array, key: DataKey): Buffer {
  if (key === null) return Buffer.concat([data, createHash('sha256').update(data).digest()]);
  const nonce = randomBytes(NONCE);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  const body = cipher.update(data);
  cipher.final();
  return Buffer.concat([nonce, body, cipher.getAuthTag()]);
}

/** The bytes sealed in `data`, or null when they are damaged (or sealed under another key). */
export function tryUnseal(data: Buffer, key: DataKey): Buffer | null {
  if (key === null) {
    if (data.length < SUM) return null;
    const body = data.subarray(0, data.length - SUM);
    return createHash('sha256').update(body).digest().equals(data.subarray(data.length - SUM)) ? body : null;
  }
  if (data.length < NONCE + TAG) return null;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, data.subarray(0, NONCE));
    decipher.setAuthTag(data.subarray(data.length - TAG));
    // GCM's final() adds no bytes, only checks the tag (throwing on damage): the plaintext is update()'s output,
    // returned only once the tag is checked. No concat: that was a second copy of every restored byte.
    const body = decipher.update(data.subarray(NONCE, data.length - TAG));
    decipher.final();
    return body;
  } catch {
    return null;
  }
}

/** Like tryUnseal, but a damaged object is an `integrity` error naming it. */
export function unseal(data: Buffer, key: DataKey, object: string): Buffer {
  const body = tryUnseal(data, key);
  if (body === null) {
    throw new RefugeError('integrity', `store object ${object} is corrupt (checksum or authentication tag mismatch, or truncated)`, {
      hint: 'run `refuge store verify` to find every damaged object',
      details: { object },
    });
  }
  return body;
}

/** The overhead sealing adds to an object's size. */
export const sealOverhead = (key: DataKey): number => (key === null ? SUM : NONCE + TAG);

/** How refuge-store.json records the data key of an encrypted store. */
export interface EncryptionConfig {
  cipher: 'aes-256-gcm';
  /** Identifies the vault key the data key is wrapped under (not secret: a hash of the key). */
  keyId: string;
  /** The data key sealed under the vault key, base64. */
  wrappedKey: string;
}

export const VAULT_KEY_BYTES = 32;

export function vaultKeyId(vaultKey: Buffer): string {
  return createHash('sha256').update('refuge-store-key-id\0').update(vaultKey).digest('hex').slice(0, 16);
}

function assertVaultKey(vaultKey: Buffer): void {
  if (vaultKey.length !== VAULT_KEY_BYTES) {
    throw new RefugeError('invalid_argument', `a vault key has ${VAULT_KEY_BYTES} bytes, not ${vaultKey.length}`, {
      hint: 'create one with `head -c 32 /dev/urandom > vault.key` (or give 64 hex characters)',
    });
  }
}

export function newEncryption(vaultKey: Buffer): { config: EncryptionConfig; dataKey: Buffer } {
  assertVaultKey(vaultKey);
  const dataKey = randomBytes(32);
  return { config: { cipher: 'aes-256-gcm', keyId: vaultKeyId(vaultKey), wrappedKey: seal(dataKey, vaultKey).toString('base64') }, dataKey };
}

/** Opens the data key; a missing or wrong vault key is a clear `failed_precondition` / `permission_denied`. */
export function openDataKey(enc: EncryptionConfig | null, vaultKey: Buffer | undefined, location: string): DataKey {
  if (enc === null) return null;
  if (vaultKey === undefined) {
    throw new RefugeError('failed_precondition', `the replica store at ${location} is encrypted and no vault key was given`, {
      hint: `give the vault key with id ${enc.keyId} (--key-file, or the site's store encryption key file)`,
      details: { keyId: enc.keyId },
    });
  }
  assertVaultKey(vaultKey);
  const given = vaultKeyId(vaultKey);
  if (given !== enc.keyId) {
    throw new RefugeError('permission_denied', `the vault key given (id ${given}) is not the key of the replica store at ${location} (id ${enc.keyId})`, {
      hint: 'use the vault key the store was created with',
      details: { keyId: enc.keyId, givenKeyId: given },
    });
  }
  const dataKey = tryUnseal(Buffer.from(enc.wrappedKey, 'base64'), vaultKey);
  if (dataKey === null || dataKey.length !== 32) {
    throw new RefugeError('integrity', `the wrapped data key in refuge-store.json at ${location} is damaged`, { details: { object: 'refuge-store.json' } });
  }
  return dataKey;
}

/** Reads a vault key given as 32 raw bytes or as 64 hex characters (with optional trailing newline). */
export function parseVaultKey(contents: Buffer): Buffer {
  const text = contents.toString('latin1').trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  assertVaultKey(contents);
  return contents;
}
