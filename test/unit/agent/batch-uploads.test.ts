import { randomBytes } from 'node:crypto';
import https from 'node:https';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ReplicatorClient, type ChunkBodyEncoding, type ReplicatorTransport } from '../../../src/agent/clients.js';
import { BasesMissingError, ChunkUploader } from '../../../src/agent/shipping/chunk-uploader.js';
import { RefugeError } from '../../../src/core/errors.js';
import type { HttpConnection } from '../../../src/core/http-client.js';
import { BATCH_CONTENT_TYPE, BATCH_ENTRY_HEADER, BatchWriter, decodeBatch, encodeBatch, frameBatch, readBatch, type BatchEntry, type FramedBatch } from '../../../src/protocol/chunk-batch.js';
import type { CommitPointRequest } from '../../../src/protocol/schemas.js';
import { chunkHash } from '../../helpers/chunk-name.js';
import { CHUNK, startAgentFixture, waitFor, type AgentFixture } from '../../helpers/agent/agent-fixture.js';

/** The real client, with what a test changes on the way: counts calls, and may play a replicator without batches. */
class Observed implements ReplicatorTransport {
  singlePuts = 0;
  batches = 0;
  /** The hashes of each missing-chunks query. */
  asked: string[][] = [];
  /** Batch requests under way now, and at most. */
  inFlight = 0;
  mostInFlight = 0;
  constructor(
    private readonly inner: ReplicatorClient,
    private readonly o: { noBatchRoute?: boolean; rewrite?: (entries: BatchEntry[]) => BatchEntry[]; beforeBatch?: (entries: BatchEntry[]) => Promise<void> } = {},
  ) {}
  missing(hashes: string[]) {
    this.asked.push(hashes);
    return this.inner.missing(hashes);
  }
  async putChunk(hash: string, body: Uint8Array, encoding: ChunkBodyEncoding) {
    this.singlePuts++;
    await this.inner.putChunk(hash, body, encoding);
  }
  async putChunks(batch: FramedBatch, signal?: AbortSignal) {
    this.batches++;
    this.mostInFlight = Math.max(this.mostInFlight, ++this.inFlight);
    try {
      await this.o.beforeBatch?.(batch.entries);
      // What the vault answers for a route it does not have (a replicator that predates batch uploads).
      if (this.o.noBatchRoute) throw new RefugeError('not_found', 'no route POST /replicator/v1/replications/x/chunks/batch');
      return await this.inner.putChunks(this.o.rewrite ? frameBatch(this.o.rewrite(batch.entries)) : batch, signal);
    } finally {
      this.inFlight--;
    }
  }
  commit(req: CommitPointRequest) {
    return this.inner.commit(req);
  }
}

/**
 * Sends the first `sendBytes` of a batch request body (whose content-length announces all of it), waits for
 * `stored` to hold, then cuts the connection: a link going down mid-upload.
 */
async function cutMidBatch(url: string, c: HttpConnection, body: Buffer, sendBytes: number, stored: () => boolean): Promise<void> {
  const req = https.request(url, {
    method: 'POST', agent: false, ...(c.ca ? { ca: c.ca } : {}), ...(c.cert && c.key ? { cert: c.cert, key: c.key } : {}),
    headers: { 'content-type': BATCH_CONTENT_TYPE, 'content-length': String(body.length), ...(c.token ? { authorization: `Bearer ${c.token}` } : {}) },
  });
  req.on('error', () => undefined); // the cut is ours
  req.write(body.subarray(0, sendBytes));
  await waitFor(stored, 20_000, 'the entries sent whole stored');
  req.destroy();
}

/**
 * The agent's uploader against the real replicator: chunks travel in batch requests; a patch whose base the
 * replicator lacks goes again whole; a replicator without batch uploads gets one request per chunk. Each time the
 * committed point restores to exactly the bytes shipped.
 */
describe('batch uploads from the agent', () => {
  let f: AgentFixture;
  let client: ReplicatorClient;
  let replicationId: string;
  const COUNT = 12;
  const sizeBytes = COUNT * CHUNK;
  /** Uploader batches of every chunk a test ships, whatever UPLOAD_BATCH_BYTES is. */
  const ALL = COUNT * CHUNK;

  beforeEach(async () => {
    f = await startAgentFixture('ragbatch-');
    await f.api('POST', '/vaults/demo/agents/register', {
      site: 'primary', agentVersion: 't',
      machine: { name: 'vm1', hostname: 'h', os: 'linux', cpus: 1, memoryMiB: 128, disks: [{ name: 'disk0', sizeBytes }], boot: { kind: 'disk' } },
    });
    replicationId = (await f.api<{ id: string }>('POST', '/vaults/demo/replications', { machine: 'vm1', policy: 'default', targetSite: 'recovery' })).id;
    client = new ReplicatorClient(`${f.server.url}/replicator/v1`, replicationId, await f.agentConnection());
  });
  afterEach(async () => {
    await f.close();
  });

  /** Seeds and commits a disk of random chunks; `next` is each chunk with its 4 KiB block at 8 KiB changed. */
  const seedPoint = async (transport: Observed, batchBytes = ALL) => {
    const seed = Array.from({ length: COUNT }, () => randomBytes(CHUNK));
    const first = new ChunkUploader(transport, { batchBytes });
    for (const data of seed) await first.add({ hash: chunkHash(data), data });
    await first.finish();
    const p1 = await transport.commit({ parentId: null, capturedAt: new Date(Date.now() - 1000).toISOString(), consistency: 'crash', disks: [{ name: 'disk0', sizeBytes, changes: seed.map((d, i) => [i, chunkHash(d)]) }] });
    const next = seed.map((d) => {
      const n = Buffer.from(d);
      randomBytes(4096).copy(n, 8192);
      return n;
    });
    return { seed, p1, next };
  };

  /** Seeds a disk of random chunks, then changes one 4 KiB block of each and ships those as patches. */
  const shipTwoPoints = async (transport: Observed, o: { batchBytes?: number; again?: boolean } = {}) => {
    const { seed, p1, next } = await seedPoint(transport, o.batchBytes);
    const shipNext = async (askAboutPatches: boolean) => {
      const second = new ChunkUploader(transport, { batchBytes: o.batchBytes ?? ALL, askAboutPatches });
      for (const [i, data] of next.entries()) await second.add({ hash: chunkHash(data), data, base: chunkHash(seed[i] as Buffer), runs: [[8192, 4096]] });
      return second.finish();
    };
    let stats = await shipNext(false);
    if (o.again) {
      // The first attempt's commit never happened (a cut abandoned): the next upload, asking about its patches,
      // finds them stored and sends nothing.
      stats = await shipNext(true);
    }
    const p2 = await transport.commit({ parentId: p1.pointId, capturedAt: new Date().toISOString(), consistency: 'crash', disks: [{ name: 'disk0', sizeBytes, changes: next.map((d, i) => [i, chunkHash(d)]) }] });
    expect((await f.restore(replicationId, p1.pointId)).equals(Buffer.concat(seed))).toBe(true);
    expect((await f.restore(replicationId, p2.pointId)).equals(Buffer.concat(next))).toBe(true);
    return stats;
  };

  it('sends chunks in batches and patches as patches', async () => {
    const t = new Observed(client);
    const stats = await shipTwoPoints(t, { batchBytes: 4 * CHUNK }); // three agent batches for the seed
    expect(t.singlePuts).toBe(0);
    expect(t.batches).toBe(4);
    expect(stats).toMatchObject({ patches: COUNT, whole: 0, chunkBytes: COUNT * CHUNK });
    expect(stats.wireBytes).toBeLessThan(COUNT * (4096 + 8 + 100));
    // The seed's batches asked which chunks were missing; the patches went without asking.
    expect(t.asked.map((h) => h.length)).toEqual([4, 4, 4]);
  });

  it('asks about patches too after an attempt that did not commit, and sends none the store holds', async () => {
    const t = new Observed(client);
    const stats = await shipTwoPoints(t, { again: true });
    expect(t.asked.map((h) => h.length)).toEqual([COUNT, COUNT]); // the seed, then the retried patches
    expect(t.batches).toBe(2); // the seed's and the first attempt's: the retry had nothing to send
    expect(stats).toMatchObject({ offered: COUNT, deduplicated: COUNT, patches: 0, whole: 0, wireBytes: 0 });
  });

  it('uploads two batches at once, never more, and a refused batch fails the upload', async () => {
    const slow = new Observed(client, { beforeBatch: () => new Promise((r) => setTimeout(r, 30)) });
    const chunks = Array.from({ length: COUNT }, () => randomBytes(CHUNK));
    const uploader = new ChunkUploader(slow, { batchBytes: 2 * CHUNK }); // six batches
    for (const data of chunks) await uploader.add({ hash: chunkHash(data), data });
    expect(await uploader.finish()).toMatchObject({ whole: COUNT, chunkBytes: COUNT * CHUNK });
    expect(slow.batches).toBe(6);
    expect(slow.mostInFlight).toBe(2);
    const p = await slow.commit({ parentId: null, capturedAt: new Date().toISOString(), consistency: 'crash', disks: [{ name: 'disk0', sizeBytes, changes: chunks.map((d, i) => [i, chunkHash(d)]) }] });
    expect((await f.restore(replicationId, p.pointId)).equals(Buffer.concat(chunks))).toBe(true);

    let n = 0;
    const refusing = new Observed(client, {
      beforeBatch: async () => {
        if (++n === 2) throw new RefugeError('invalid_argument', 'the second batch is refused');
        await new Promise((r) => setTimeout(r, 200)); // the first is still under way when the second fails
      },
    });
    const again = new ChunkUploader(refusing, { batchBytes: 2 * CHUNK });
    const ship = async () => {
      for (const data of Array.from({ length: COUNT }, () => randomBytes(CHUNK))) await again.add({ hash: chunkHash(data), data });
      return again.finish();
    };
    await expect(ship()).rejects.toThrow('the second batch is refused');
    expect(refusing.inFlight).toBe(0); // the other upload was waited for: nothing runs behind the caller's back
  });

  it('sends a hash once per batch, as patch or whole, and counts the repeats as deduplicated', async () => {
    const t = new Observed(client);
    const seed = randomBytes(CHUNK);
    const first = new ChunkUploader(t, { batchBytes: ALL });
    await first.add({ hash: chunkHash(seed), data: seed });
    await first.finish();
    const p1 = await t.commit({ parentId: null, capturedAt: new Date(Date.now() - 1000).toISOString(), consistency: 'crash', disks: [{ name: 'disk0', sizeBytes, changes: [[0, chunkHash(seed)]] }] });
    const next = Buffer.from(seed);
    randomBytes(4096).copy(next, 0);
    const hash = chunkHash(next);
    const second = new ChunkUploader(t, { batchBytes: ALL, askAboutPatches: false });
    await second.add({ hash, data: next, base: chunkHash(seed), runs: [[0, 4096]] }); // a patch, not asked about
    await second.add({ hash, data: next }); // the same chunk whole (asked about: missing)
    await second.add({ hash, data: next, base: chunkHash(seed), runs: [[0, 4096]] });
    expect(await second.finish()).toMatchObject({ offered: 3, deduplicated: 2, patches: 1, whole: 0, chunkBytes: CHUNK });
    expect(t.asked.at(-1)).toEqual([hash]);
    const p2 = await t.commit({ parentId: p1.pointId, capturedAt: new Date().toISOString(), consistency: 'crash', disks: [{ name: 'disk0', sizeBytes, changes: [[0, hash]] }] });
    expect((await f.restore(replicationId, p2.pointId)).subarray(0, CHUNK).equals(next)).toBe(true);
  });

  it('abort stops the uploads under way and waits for them; finish then throws why', async () => {
    const slow = new Observed(client, { beforeBatch: () => new Promise((r) => setTimeout(r, 300)) });
    const uploader = new ChunkUploader(slow, { batchBytes: 2 * CHUNK });
    for (const data of Array.from({ length: 4 }, () => randomBytes(CHUNK))) await uploader.add({ hash: chunkHash(data), data }); // two batches
    await waitFor(() => slow.inFlight === 2, 10_000, 'two batches under way');
    await uploader.abort(new Error('reading disk0 failed'));
    expect(slow.inFlight).toBe(0); // nothing runs behind the caller's back
    await expect(uploader.finish()).rejects.toThrow('reading disk0 failed');
  });

  it('copies what it is given: one buffer reused for every chunk, through many batches, still restores exactly', async () => {
    const t = new Observed(client);
    // Half of the chunks compress (zstd into the pooled batch body), half do not (copied into it).
    const seed = Array.from({ length: COUNT }, (_, i) => (i % 2 ? randomBytes(CHUNK) : Buffer.alloc(CHUNK, i).fill(randomBytes(64), 0, 64)));
    const reused = Buffer.alloc(CHUNK);
    const first = new ChunkUploader(t, { batchBytes: 2 * CHUNK }); // six batches: the slabs and bodies go round
    for (const data of seed) {
      data.copy(reused);
      await first.add({ hash: chunkHash(data), data: reused });
      reused.fill(0xee); // what a reader reusing its buffer does next
    }
    expect(await first.finish()).toMatchObject({ whole: COUNT, chunkBytes: COUNT * CHUNK });
    const p1 = await t.commit({ parentId: null, capturedAt: new Date(Date.now() - 1000).toISOString(), consistency: 'crash', disks: [{ name: 'disk0', sizeBytes, changes: seed.map((d, i) => [i, chunkHash(d)]) }] });
    const next = seed.map((d, i) => {
      const n = Buffer.from(d);
      (i % 3 ? randomBytes(4096) : Buffer.alloc(4096, 9)).copy(n, 4096 * (i % 4));
      return n;
    });
    const second = new ChunkUploader(t, { batchBytes: 3 * CHUNK });
    for (const [i, data] of next.entries()) {
      data.copy(reused);
      await second.add({ hash: chunkHash(data), data: reused, base: chunkHash(seed[i] as Buffer), runs: [[4096 * (i % 4), 4096]] });
      reused.fill(0xee);
    }
    expect(await second.finish()).toMatchObject({ patches: COUNT, chunkBytes: COUNT * CHUNK });
    const p2 = await t.commit({ parentId: p1.pointId, capturedAt: new Date().toISOString(), consistency: 'crash', disks: [{ name: 'disk0', sizeBytes, changes: next.map((d, i) => [i, chunkHash(d)]) }] });
    expect((await f.restore(replicationId, p1.pointId)).equals(Buffer.concat(seed))).toBe(true);
    expect((await f.restore(replicationId, p2.pointId)).equals(Buffer.concat(next))).toBe(true);
  });

  it.each([
    ['batches', {}],
    ['one chunk per request', { noBatchRoute: true }],
  ] as const)('refuses a cut whose patches lack their base, naming the bases, and sends those chunks whole next (%s)', async (_, how) => {
    const t = new Observed(client, how);
    const { seed, p1, next } = await seedPoint(t);
    // The agent's view is stale for chunks 0 and 5: their base is a chunk nobody stored.
    const bogus = chunkHash(Buffer.from('a base nobody stored'));
    const baseOf = (i: number) => (i === 0 || i === 5 ? bogus : chunkHash(seed[i] as Buffer));
    let u: ChunkUploader | undefined;
    const ship = async (o: { wholeOn?: Set<string> }) => {
      u = new ChunkUploader(t, { batchBytes: ALL, askAboutPatches: true, ...o });
      for (const [i, data] of next.entries()) await u.add({ hash: chunkHash(data), data, base: baseOf(i), runs: [[8192, 4096]] });
      return u.finish();
    };
    const err = await ship({}).then(() => undefined, (e: unknown) => e);
    expect(u?.stats).toMatchObject({ offered: COUNT, deduplicated: 0, patches: COUNT - 2, whole: 0, refused: 2 });
    expect(err).toBeInstanceOf(BasesMissingError);
    expect((err as BasesMissingError).bases).toEqual([bogus]);
    expect((err as BasesMissingError).message).toMatch(/lacks the base chunk of a patch .*next cut sends those chunks whole/);
    // The next attempt (the agent's next cut) asks, finds the ten good patches stored, and sends the two whole.
    const stats = await ship({ wholeOn: new Set(err instanceof BasesMissingError ? err.bases : []) });
    expect(stats).toMatchObject({ offered: COUNT, deduplicated: COUNT - 2, patches: 0, whole: 2, chunkBytes: 2 * CHUNK });
    const p2 = await t.commit({ parentId: p1.pointId, capturedAt: new Date().toISOString(), consistency: 'crash', disks: [{ name: 'disk0', sizeBytes, changes: next.map((d, i) => [i, chunkHash(d)]) }] });
    expect((await f.restore(replicationId, p2.pointId)).equals(Buffer.concat(next))).toBe(true);
  });

  it('holds patches, not whole chunks: a batch of patches is many chunks to one request', async () => {
    const t = new Observed(client);
    const stats = await shipTwoPoints(t, { batchBytes: 2 * CHUNK }); // the seed: six batches of two whole chunks
    expect(t.batches).toBe(6 + 1); // the patches (4 KiB each) all fit the second uploader's first batch
    expect(stats).toMatchObject({ patches: COUNT, whole: 0, chunkBytes: COUNT * CHUNK });
  });

  it('sends one chunk per request to a replicator without batch uploads', async () => {
    const t = new Observed(client, { noBatchRoute: true });
    const stats = await shipTwoPoints(t);
    expect(t.singlePuts).toBe(2 * COUNT);
    expect(t.batches).toBe(2); // each uploader tries once
    expect(stats).toMatchObject({ patches: COUNT, whole: 0 });
  });

  it('after a connection cut mid-batch, resends only the chunks the replicator had not stored', async () => {
    const chunks = Array.from({ length: COUNT }, () => randomBytes(CHUNK)); // random: sent whole, uncompressed
    const WHOLE = 5;
    const sizes: number[] = [];
    const t = new Observed(client, {
      beforeBatch: async (entries) => {
        sizes.push(entries.length);
        if (sizes.length > 1) return;
        // The link goes down once five entries and half of the sixth have arrived.
        const url = `${f.server.url}/replicator/v1/replications/${replicationId}/chunks/batch`;
        await cutMidBatch(url, await f.agentConnection(), encodeBatch(entries), WHOLE * (BATCH_ENTRY_HEADER + CHUNK) + BATCH_ENTRY_HEADER + CHUNK / 2, () => f.counters(replicationId)?.wireBytesReceived === WHOLE * CHUNK);
        throw new RefugeError('unavailable', 'the connection was cut', { retryable: true });
      },
    });
    const uploader = new ChunkUploader(t, { batchBytes: ALL, retry: { firstDelayMs: 10 } });
    for (const data of chunks) await uploader.add({ hash: chunkHash(data), data });
    const stats = await uploader.finish();
    expect(sizes).toEqual([COUNT, COUNT - WHOLE]);
    // Every chunk crossed once: the five stored before the cut were not sent again (the half entry never counted).
    expect(f.counters(replicationId)?.wireBytesReceived).toBe(COUNT * CHUNK);
    expect(f.counters(replicationId)?.chunksReceived).toBe(COUNT);
    expect(stats).toMatchObject({ whole: COUNT, chunkBytes: COUNT * CHUNK, wireBytes: (COUNT - WHOLE) * CHUNK });
    const p = await t.commit({ parentId: null, capturedAt: new Date().toISOString(), consistency: 'crash', disks: [{ name: 'disk0', sizeBytes, changes: chunks.map((d, i) => [i, chunkHash(d)]) }] });
    expect((await f.restore(replicationId, p.pointId)).equals(Buffer.concat(chunks))).toBe(true);
  });
});

describe('reading a batch body as it arrives', () => {
  const entries: BatchEntry[] = [
    { hash: 'a'.repeat(64), body: randomBytes(5000), compressed: false },
    { hash: 'b'.repeat(64), body: randomBytes(300), compressed: true, patch: { base: 'c'.repeat(64), chunkLength: 8192 } },
    { hash: 'd'.repeat(64), body: randomBytes(1), compressed: false, patch: { base: null, chunkLength: 4096 } },
  ];
  const body = encodeBatch(entries);
  async function* pieces(size: number, upTo = body.length) {
    for (let at = 0; at < upTo; at += size) yield body.subarray(at, Math.min(upTo, at + size));
  }
  const read = async (source: AsyncIterable<Buffer>, max = 1 << 20) => {
    const out: BatchEntry[] = [];
    for await (const e of readBatch(source, max)) out.push(e);
    return out;
  };

  it('yields the entries decodeBatch finds, however the body is split', async () => {
    for (const size of [1, 7, 72, 73, 74, 4096, body.length]) expect(await read(pieces(size))).toEqual(decodeBatch(body));
  });

  it('frames in place: any run of consecutive entries a writer appended is a batch body of exactly those entries', () => {
    const writer = new BatchWriter(Buffer.alloc(body.length + 100));
    for (const e of entries) writer.append(e.hash, e.patch, e.body.length + 10, (dst) => ({ length: e.body.copy(dst), compressed: e.compressed }));
    expect(writer.framed().body.equals(body)).toBe(true);
    for (const [from, to] of [[0, 1], [1, 3], [2, 3], [0, 3]] as const) {
      const part = writer.framed(from, to);
      expect(decodeBatch(part.body)).toEqual(entries.slice(from, to));
      expect(part.entries).toEqual(entries.slice(from, to));
    }
    expect(() => writer.append('e'.repeat(64), undefined, 200, () => ({ length: 0, compressed: false }))).toThrow(/no room/);
  });

  it('yields each entry that arrived whole before a body that ends early fails, and refuses an oversized entry', async () => {
    const seen: string[] = [];
    await expect((async () => {
      for await (const e of readBatch(pieces(100, BATCH_ENTRY_HEADER + 5000 + 10), 1 << 20)) seen.push(e.hash);
    })()).rejects.toThrow(/entry 1 ends inside its header/);
    expect(seen).toEqual(['a'.repeat(64)]);
    await expect(read(pieces(64), 4999)).rejects.toThrow(/entry 0 is longer than 4999 bytes/);
  });
});
