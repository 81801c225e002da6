import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isRefugeError } from '../../../src/core/errors.js';
import type { StoreBackend } from '../../../src/store/backend.js';
import { expectRefugeError } from './expect-error.js';

/**
 * The contract of src/store/backend.ts, written once and run against every backend (filesystem today, S3 and
 * Azure Blob later). It only uses the StoreBackend interface: nothing here may know where the bytes end up.
 * Each test gets a fresh, empty backend from `create`.
 */

// Keys that must never reach storage: path-like, uppercase, empty segments.
const INVALID_KEYS = ['../x', 'A', '/x', '', 'a//b', 'a/', 'a/../b'];

/** What a call did, as a short comparable string: "returned <json>", "threw <code>[ (retryable)]" or "threw plain ...". */
async function outcome(call: Promise<unknown>): Promise<string> {
  try {
    const value = await call;
    return `returned ${value === undefined ? 'undefined' : JSON.stringify(value)}`;
  } catch (err) {
    if (!isRefugeError(err)) return `threw plain ${String(err)}`;
    return `threw ${err.code}${err.retryable ? ' (retryable)' : ''}`;
  }
}

export function describeBackendContract(
  name: string,
  create: () => Promise<{ backend: StoreBackend; cleanup(): Promise<void> }>,
): void {
  describe(`StoreBackend contract: ${name}`, () => {
    let subject: { backend: StoreBackend; cleanup(): Promise<void> };
    let backend: StoreBackend;

    beforeEach(async () => {
      subject = await create();
      backend = subject.backend;
    });
    afterEach(async () => {
      await subject.cleanup();
    });

    it('get returns exactly the bytes put, and exists reports the object', async () => {
      // Every byte value, so a backend that treats objects as text would mangle something.
      const data = Buffer.from(Array.from({ length: 512 }, (_, i) => i % 256));
      await backend.put('points/rep_a/pt_1.json', data);
      expect(await backend.get('points/rep_a/pt_1.json')).toEqual(data);
      expect(await backend.exists('points/rep_a/pt_1.json')).toBe(true);
      expect(await backend.exists('points/rep_a/pt_2.json')).toBe(false);
      expect(backend.location).toMatch(/^[a-z0-9+.-]+:\/\//);
    });

    it('getRange returns the bytes of a range, fewer at the end of the object, none past it', async () => {
      const data = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7) % 256));
      await backend.put('packs/ab/p1', data);
      expect(await backend.getRange('packs/ab/p1', 0, 1000)).toEqual(data);
      expect(await backend.getRange('packs/ab/p1', 10, 20)).toEqual(data.subarray(10, 30));
      expect(await backend.getRange('packs/ab/p1', 990, 50)).toEqual(data.subarray(990));
      expect(await backend.getRange('packs/ab/p1', 1000, 10)).toEqual(Buffer.alloc(0));
      expect(await backend.getRange('packs/ab/p1', 5000, 10)).toEqual(Buffer.alloc(0));
      expect(await backend.getRange('packs/ab/p1', 3, 0)).toEqual(Buffer.alloc(0));
      await expectRefugeError(backend.getRange('packs/ab/none', 0, 10), 'not_found');
      await expectRefugeError(backend.getRange('packs/ab/none', 0, 0), 'not_found');
      await expectRefugeError(backend.getRange('packs/ab/p1', -1, 10), 'invalid_argument');
      await expectRefugeError(backend.getRange('../x', 0, 10), 'invalid_argument');
    });

    it('stores empty objects', async () => {
      await backend.put('locks/empty', Buffer.alloc(0));
      expect(await backend.get('locks/empty')).toEqual(Buffer.alloc(0));
      expect(await backend.exists('locks/empty')).toBe(true);
    });

    it('get of a missing key throws not_found, which no retry cures', async () => {
      const err = await expectRefugeError(backend.get('chunks/00/missing'), 'not_found');
      expect(err.retryable).toBe(false);
    });

    it('put is idempotent: the same bytes again under an existing key succeed', async () => {
      const data = randomBytes(1000);
      await backend.put('chunks/ab/same', data);
      await backend.put('chunks/ab/same', data);
      // Two uploaders racing with the same chunk is normal (dedup across machines).
      await Promise.all([backend.put('chunks/ab/same', data), backend.put('chunks/ab/same', data)]);
      expect(await backend.get('chunks/ab/same')).toEqual(data);
      expect(await backend.list('chunks/')).toEqual(['chunks/ab/same']);
    });

    it('objects do not alias the caller buffers', async () => {
      const data = Buffer.from('original bytes');
      const copy = Buffer.from(data);
      await backend.put('k', data);
      data.fill(0); // the caller reuses its buffer once put resolved
      const got = await backend.get('k');
      expect(got).toEqual(copy);
      got.fill(1); // and may scribble on what get returned
      expect(await backend.get('k')).toEqual(copy);
    });

    it('put is atomic: while it runs, readers see the whole object or none of it', async () => {
      // Readers race several large puts; an object seen at all must be seen whole. A non-atomic write shows an
      // empty or half-written object for a moment, so two readers per put and several rounds widen the window.
      for (let round = 0; round < 4; round++) {
        const prefix = `atomic/r${round}/`;
        const key = `${prefix}big`;
        const data = randomBytes(8 * 1024 * 1024);
        const expectWhole = (got: Buffer) => {
          expect(got.length).toBe(data.length);
          expect(got.equals(data)).toBe(true);
        };
        let settled = false;
        const putResult = backend.put(key, data).then(
          () => ((settled = true), undefined),
          (err: unknown) => ((settled = true), err),
        );
        const reader = async (withList: boolean): Promise<void> => {
          do {
            if (withList) {
              const listed = await backend.list(prefix);
              expect(listed.filter((k) => k !== key)).toEqual([]); // no temporary name ever shows
              if (listed.includes(key)) expectWhole(await backend.get(key)); // listed means readable in full
            }
            try {
              expectWhole(await backend.get(key));
            } catch (err) {
              if (!isRefugeError(err, 'not_found')) throw err;
            }
          } while (!settled);
        };
        await Promise.all([reader(true), reader(false)]);
        expect(await putResult).toBeUndefined();
        expectWhole(await backend.get(key));
      }
    });

    it('list returns every key starting with the prefix, sorted, nested keys included', async () => {
      const keys = [
        'refuge-store.json',
        'points/rep_b/pt_2.json',
        'points/rep_a/pt_1.json',
        'points/rep_a/pt_0.json',
        'points/rep_ab/pt_9.json',
        'points/rep_a/sub/deep/z',
        'chunks/ff/ff01',
        'chunks/0a/0a99',
        'chunks/0a/0a00',
      ];
      for (const k of keys) await backend.put(k, Buffer.from(k));
      expect(await backend.list('')).toEqual([...keys].sort());
      expect(await backend.list('points/')).toEqual([
        'points/rep_a/pt_0.json',
        'points/rep_a/pt_1.json',
        'points/rep_a/sub/deep/z',
        'points/rep_ab/pt_9.json',
        'points/rep_b/pt_2.json',
      ]);
      // With the slash, a replication's prefix must not catch a replication whose id merely starts the same.
      expect(await backend.list('points/rep_a/')).toEqual(['points/rep_a/pt_0.json', 'points/rep_a/pt_1.json', 'points/rep_a/sub/deep/z']);
      // A prefix is a string prefix, not a folder: it may end in the middle of a segment.
      expect(await backend.list('points/rep_a')).toEqual([
        'points/rep_a/pt_0.json',
        'points/rep_a/pt_1.json',
        'points/rep_a/sub/deep/z',
        'points/rep_ab/pt_9.json',
      ]);
      expect(await backend.list('chunks/0a/0a9')).toEqual(['chunks/0a/0a99']);
      expect(await backend.list('ref')).toEqual(['refuge-store.json']);
      expect(await backend.list('nothing/')).toEqual([]);
      expect(await backend.list('points/rep_c/')).toEqual([]);
    });

    it('list leaves out nothing that was put, and forgets what was deleted', async () => {
      // 60 distinct keys over 7 folders, put concurrently so they land in no particular order.
      const keys = Array.from({ length: 60 }, (_, i) => `chunks/0${i % 7}/k${(i * 919) % 1000}`);
      await Promise.all(keys.map((k) => backend.put(k, Buffer.from(k))));
      expect(await backend.list('chunks/')).toEqual([...keys].sort());
      await backend.delete('chunks/03/k757');
      expect(await backend.list('chunks/')).toEqual(keys.filter((k) => k !== 'chunks/03/k757').sort());
    });

    it('delete removes an object; deleting a missing key succeeds', async () => {
      await backend.put('points/rep_a/pt_1.json', Buffer.from('x'));
      await backend.delete('points/rep_a/pt_1.json');
      await expectRefugeError(backend.get('points/rep_a/pt_1.json'), 'not_found');
      expect(await backend.exists('points/rep_a/pt_1.json')).toBe(false);
      await backend.delete('points/rep_a/pt_1.json');
      await backend.delete('never/was/here');
    });

    it('a key that is only the beginning of stored keys is a missing object', async () => {
      await backend.put('a/b/c', Buffer.from('x'));
      expect({
        exists: await outcome(backend.exists('a/b')),
        get: await outcome(backend.get('a/b')),
        delete: await outcome(backend.delete('a/b')), // missing, so it succeeds
        listUnderObject: await outcome(backend.list('a/b/c/')), // nothing is stored "under" an object
      }).toEqual({ exists: 'returned false', get: 'threw not_found', delete: 'returned undefined', listUnderObject: 'returned []' });
      expect(await backend.get('a/b/c')).toEqual(Buffer.from('x')); // and nothing else was removed
    });

    it('rejects invalid keys on every operation as a caller error, storing nothing', async () => {
      await backend.put('keep', Buffer.from('k'));
      // One map of every outcome, so a failure shows the whole picture rather than the first mismatch.
      const outcomes: Record<string, string> = {};
      for (const key of INVALID_KEYS) {
        outcomes[`get(${JSON.stringify(key)})`] = await outcome(backend.get(key));
        outcomes[`put(${JSON.stringify(key)})`] = await outcome(backend.put(key, Buffer.from('evil')));
        outcomes[`exists(${JSON.stringify(key)})`] = await outcome(backend.exists(key));
        outcomes[`delete(${JSON.stringify(key)})`] = await outcome(backend.delete(key));
      }
      // invalid_argument and not retryable: the caller must fix the key, retrying the same key can never work.
      expect(outcomes).toEqual(Object.fromEntries(Object.keys(outcomes).map((k) => [k, 'threw invalid_argument'])));
      expect(await backend.list('')).toEqual(['keep']);
    });

    it('list of a prefix no valid key can start with finds nothing (or is refused as a caller error)', async () => {
      await backend.put('a/b', Buffer.from('x'));
      for (const prefix of ['A/', '../', 'a//']) {
        expect(['returned []', 'threw invalid_argument'], `list(${JSON.stringify(prefix)})`).toContain(await outcome(backend.list(prefix)));
      }
    });
  });
}
