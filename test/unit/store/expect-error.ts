import { expect } from 'vitest';
import { isRefugeError, type ErrorCode, type RefugeError } from '../../../src/core/errors.js';

/**
 * Awaits `promise` and expects it to reject with a RefugeError of `code` whose message contains every `part`.
 * Returns the error for further checks. (A plain Error fails: every store failure must carry a code.)
 */
export async function expectRefugeError(promise: Promise<unknown>, code: ErrorCode, ...parts: string[]): Promise<RefugeError> {
  let caught: unknown;
  let rejected = false;
  try {
    await promise;
  } catch (err) {
    caught = err;
    rejected = true;
  }
  expect(rejected, `expected a rejection with code '${code}'`).toBe(true);
  if (!isRefugeError(caught)) throw new Error(`expected a RefugeError '${code}', got ${String(caught)}`, { cause: caught });
  expect(caught.code, caught.message).toBe(code);
  for (const part of parts) expect(caught.message).toContain(part);
  return caught;
}
