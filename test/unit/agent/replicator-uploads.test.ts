import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { compress } from 'zstd-napi';
import { BATCH_CONTENT_TYPE, encodeBatch, type BatchEntry } from '../../../src/protocol/chunk-batch.js';
import { encodePatch } from '../../../src/protocol/chunk-encoding.js';
import { chunkHash } from '../../helpers/chunk-name.js';
import { CHUNK, MiB, startAgentFixture, type AgentFixture } from '../../helpers/agent/agent-fixture.js';

/**
 * The replicator's side of the protocol spoken directly over HTTP, with the bad data of reliability R9: chunks or
 * patches whose rebuilt bytes do not match their hash, patches against a missing base or outside the chunk,
 * decompression bombs, unknown encodings; and replayed or out-of-order uploads and commits. Nothing is ever stored
 * under a wrong name, and the store's answer to "which chunks are missing" proves it.
 */
describe('replicator uploads: bad data, replays, out of order', () => {
  let f: AgentFixture;
  let base: string;

  const put = (hash: string, body: Buffer, headers: Record<string, string> = {}) =>
    f.agentHttp('PUT', `${base}/chunks/${hash}`, { bytes: body, headers: { 'content-type': 'application/octet-stream', ...headers } });
  const putPatch = (hash: string, body: Buffer, baseHash: string, length: number, headers: Record<string, string> = {}) =>
    put(hash, body, { 'content-type': 'application/vnd.refuge.chunk-patch', 'x-refuge-patch-base': baseHash, 'x-refuge-chunk-length': String(length), ...headers });
  const missing = async (hashes: string[]) =>
    (await f.agentHttp('POST', `${base}/chunks/missing`, { body: { hashes } })).json<{ missing: string[] }>().missing;
  const commit = (body: unknown) => f.agentHttp('POST', `${base}/points`, { body });
  const message = async (r: { json<T>(): T }) => r.json<{ error: { code: string; message: string } }>().error;

  beforeEach(async () => {
    f = await startAgentFixture('ragrep-');
    await f.api('POST', '/vaults/demo/agents/register', {
      site: 'primary', agentVersion: 't',
      machine: { name: 'vm1', hostname: 'h', os: 'linux', cpus: 1, memoryMiB: 128, disks: [{ name: 'disk0', sizeBytes: 2 * CHUNK }], boot: { kind: 'disk' } },
    });
    const rep = await f.api<{ id: string }>('POST', '/vaults/demo/replications', { machine: 'vm1', policy: 'default', targetSite: 'recovery' });
    base = `${f.server.url}/replicator/v1/replications/${rep.id}`;
  });
  afterEach(async () => {
    await f.close();
  });

  it('rebuilds patched and compressed chunks and stores them only when they hash to their name', async () => {
    const chunk = randomBytes(CHUNK);
    const h = chunkHash(chunk);
    expect((await put(h, compress(chunk))).status).toBe(400); // compressed but not labelled: bytes do not match
    expect((await put(h, compress(chunk), { 'content-encoding': 'zstd' })).status).toBe(204);

    const next = Buffer.from(chunk);
    randomBytes(4096).copy(next, 8192);
    const patch = encodePatch(next, [[8192, 4096]]);
    expect((await putPatch(chunkHash(next), patch, h, CHUNK)).status).toBe(204);
    expect((await putPatch(chunkHash(next), compress(patch), h, CHUNK, { 'content-encoding': 'zstd' })).status).toBe(204); // a replay

    const fromZero = Buffer.alloc(CHUNK);
    fromZero.write('hello', 100);
    expect((await putPatch(chunkHash(fromZero), encodePatch(fromZero, [[0, 4096]]), 'zero', CHUNK)).status).toBe(204);
    expect(await missing([h, chunkHash(next), chunkHash(fromZero)])).toEqual([]);
  });

  it('rejects wrong results, missing bases, malformed patches, bombs and unknown encodings, storing nothing', async () => {
    const chunk = randomBytes(CHUNK);
    const h = chunkHash(chunk);
    expect((await put(h, chunk)).status).toBe(204);
    const next = Buffer.from(chunk);
    next.write('changed', 0);
    const claimed = chunkHash(next);
    const cases: [string, ReturnType<AgentFixture['agentHttp']>, number, RegExp][] = [
      ['patch that rebuilds other bytes', putPatch(claimed, encodePatch(chunk, [[0, 4096]]), h, CHUNK), 400, /not to the claimed/],
      ['patch on a base the store lacks', putPatch(claimed, encodePatch(next, [[0, 4096]]), chunkHash(Buffer.from('nope')), CHUNK), 412, /base chunk .* is not stored/],
      ['patch run outside the chunk', putPatch(claimed, encodePatch(Buffer.alloc(2 * CHUNK), [[CHUNK, 10]]), h, CHUNK), 400, /outside the chunk/],
      ['patch cut short', putPatch(claimed, encodePatch(next, [[0, 4096]]).subarray(0, 100), h, CHUNK), 400, /short/],
      ['chunk length beyond the chunk size', putPatch(claimed, encodePatch(next, [[0, 4096]]), h, 8 * CHUNK), 400, /outside 1\.\.\d+, the replication's chunk size/],
      ['zstd bomb', put(claimed, compress(Buffer.alloc(64 * MiB)), { 'content-encoding': 'zstd' }), 400, /does not decompress within/],
      ['garbage labelled zstd', put(claimed, randomBytes(1000), { 'content-encoding': 'zstd' }), 400, /does not decompress/],
      ['gzip', put(claimed, next, { 'content-encoding': 'gzip' }), 400, /content-encoding 'gzip' is not accepted/],
      ['bad base header', putPatch(claimed, encodePatch(next, [[0, 4096]]), '../etc', CHUNK), 400, /patch-base/],
    ];
    for (const [what, response, status, pattern] of cases) {
      const r = await response;
      expect([what, r.status]).toEqual([what, status]);
      expect((await message(r)).message).toMatch(pattern);
    }
    // A refusal for the base names it (what alone tells the agent to send the chunk whole, docs/protocol.md).
    const lacking = chunkHash(Buffer.from('nope'));
    expect((await putPatch(claimed, encodePatch(next, [[0, 4096]]), lacking, CHUNK)).json<{ error: { patchBase?: string } }>().error.patchBase).toBe(lacking);
    expect(await missing([claimed])).toEqual([claimed]);
    expect(f.counters(base.split('/').pop() as string)?.chunksRejected).toBe(cases.length - 2 + 1); // gzip and the bad header are refused before decoding; one more patch above
  });

  it('accepts uploads in any order, commits once all are there, answers a replayed commit with its point and refuses a stale one', async () => {
    const a = randomBytes(CHUNK);
    const b = randomBytes(CHUNK);
    const first = { parentId: null, capturedAt: new Date(Date.now() - 5000).toISOString(), consistency: 'crash', disks: [{ name: 'disk0', sizeBytes: 2 * CHUNK, changes: [[0, chunkHash(a)], [1, chunkHash(b)]] }] };
    expect((await put(chunkHash(b), b)).status).toBe(204);
    const early = await commit(first);
    expect(early.status).toBe(412); // chunk a is not there yet
    expect((await put(chunkHash(a), a)).status).toBe(204);
    expect((await put(chunkHash(a), a)).status).toBe(204); // replayed upload: idempotent
    const committed = await commit(first);
    expect(committed.status).toBe(201);
    const point = committed.json<{ pointId: string }>().pointId;
    const replayed = await commit(first);
    expect(replayed.status).toBe(201);
    expect(replayed.json<{ pointId: string }>().pointId).toBe(point);
    const stale = await commit({ ...first, capturedAt: new Date().toISOString() }); // same parent, another cut
    expect(stale.status).toBe(409);
    expect(stale.json<{ error: { latestPointId: string } }>().error.latestPointId).toBe(point);
    const points = await f.points();
    expect(points.map((p) => p.id)).toEqual([point]);
  });

  it('commits a point listing more chunks than a megabyte of JSON holds (a large first point)', async () => {
    const a = randomBytes(CHUNK);
    expect((await put(chunkHash(a), a)).status).toBe(204);
    const count = 16_000; // about 1.15 MB of changes: over the API's usual 1 MiB body limit
    const changes = Array.from({ length: count }, (_, i) => [i, chunkHash(a)]);
    const body = { parentId: null, capturedAt: new Date().toISOString(), consistency: 'crash', disks: [{ name: 'disk0', sizeBytes: count * CHUNK, changes }] };
    expect(JSON.stringify(body).length).toBeGreaterThan(MiB);
    const committed = await commit(body);
    expect(committed.status).toBe(201);
    expect(committed.json<{ changedBytes: number }>().changedBytes).toBe(count * CHUNK);
  });

  it('stores a batch of whole chunks and patches, lists patches on missing bases, and refuses bad bytes and bad framing', async () => {
    const batch = (entries: BatchEntry[]) => f.agentHttp('POST', `${base}/chunks/batch`, { bytes: encodeBatch(entries), headers: { 'content-type': BATCH_CONTENT_TYPE } });
    const a = randomBytes(CHUNK);
    const b = Buffer.from(a);
    randomBytes(4096).copy(b, 4096);
    const zeroBased = Buffer.alloc(CHUNK);
    zeroBased.write('hello', 10);
    const orphan = randomBytes(CHUNK);
    expect((await batch([{ hash: chunkHash(a), body: compress(a), compressed: true }])).json()).toEqual({ stored: 1, baseMissing: [] });
    const ok = await batch([
      { hash: chunkHash(b), body: encodePatch(b, [[4096, 4096]]), compressed: false, patch: { base: chunkHash(a), chunkLength: CHUNK } },
      { hash: chunkHash(zeroBased), body: compress(encodePatch(zeroBased, [[0, 4096]])), compressed: true, patch: { base: null, chunkLength: CHUNK } },
      { hash: chunkHash(orphan), body: encodePatch(orphan, [[0, 4096]]), compressed: false, patch: { base: chunkHash(Buffer.from('not stored')), chunkLength: CHUNK } },
    ]);
    expect(ok.status).toBe(200);
    expect(ok.json()).toEqual({ stored: 2, baseMissing: [chunkHash(orphan)] });
    expect(await missing([chunkHash(a), chunkHash(b), chunkHash(zeroBased), chunkHash(orphan)])).toEqual([chunkHash(orphan)]);
    const committed = await commit({ parentId: null, capturedAt: new Date().toISOString(), consistency: 'crash', disks: [{ name: 'disk0', sizeBytes: 2 * CHUNK, changes: [[0, chunkHash(b)], [1, chunkHash(zeroBased)]] }] });
    expect(committed.status).toBe(201);
    const restored = await f.restore(base.split('/').pop() as string, committed.json<{ pointId: string }>().pointId);
    expect(restored.equals(Buffer.concat([b, zeroBased]))).toBe(true);

    const c = randomBytes(CHUNK);
    const wrong = await batch([{ hash: chunkHash(c), body: randomBytes(CHUNK), compressed: false }]);
    expect(wrong.status).toBe(400);
    expect((await message(wrong)).message).toMatch(/not to the claimed/);
    const framed = encodeBatch([{ hash: chunkHash(c), body: c, compressed: false }]);
    const short = await f.agentHttp('POST', `${base}/chunks/batch`, { bytes: framed.subarray(0, framed.length - 1), headers: { 'content-type': BATCH_CONTENT_TYPE } });
    expect(short.status).toBe(400);
    expect((await message(short)).message).toMatch(/longer than the body/);
    expect(await missing([chunkHash(c)])).toEqual([chunkHash(c)]);
  });
});
