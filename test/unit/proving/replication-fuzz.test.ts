import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compress } from 'zstd-napi';
import { encodePatch } from '../../../src/protocol/chunk-encoding.js';
import { FilesystemBackend } from '../../../src/store/backends/filesystem.js';
import { chunkHash } from '../../helpers/chunk-name.js';
import { ReplicaStore } from '../../../src/store/replica-store.js';
import { verifyStore } from '../../../src/store/verify.js';
import { figure } from '../../helpers/figures.js';
import { fuzzRuns, fuzzTimeoutMs } from '../../helpers/fuzz.js';
import { CHUNK, createTestVault, seedConfiguration, type TestVault } from '../../helpers/test-vault.js';

type Status = number;
const PATCH = 'application/vnd.refuge.chunk-patch';
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Chunk contents the generated uploads and commits draw from: full, short, a few bytes, and all zeros. */
function contents(seed: number): Buffer[] {
  const full = (n: number) => {
    const b = Buffer.alloc(CHUNK);
    for (let i = 0; i < CHUNK; i += 4096) b.writeUInt32BE((seed * 7919 + n * 104729 + i) >>> 0, i);
    return b;
  };
  const short = Buffer.alloc(100, `short chunk ${seed} `); // exactly the last chunk of a disk of 2 chunks + 100 bytes
  return [full(1), full(2), full(3), short, Buffer.alloc(CHUNK)];
}

/**
 * Fuzzing the replication protocol (reliability R9): generated chunk uploads (right and wrong names, zstd that is
 * and is not, patches on known, unknown and zero bases, truncated and flipped bodies, unknown encodings and
 * malformed names) and generated commits (right, stale, replayed, random and malformed parents; chunk indexes past
 * the disk; chunks not uploaded; duplicate disks; resized disks). Every answer is the one docs/protocol.md gives,
 * never a 5xx; nothing is stored under a wrong name (the store verifies clean, and every stored chunk reads back
 * as its name); every committed point restores to exactly what its commits said, at its size.
 */
describe('replication protocol fuzzing', () => {
  let v: TestVault;
  let requests = 0;
  let machines = 0;
  const storeDir = () => join(v.dataDir, 'sites', 'recovery', 'store');

  beforeAll(async () => {
    v = await createTestVault();
    await seedConfiguration(v);
    // Room for every generated machine, so enabling replication is never refused by the capacity check.
    const site = await v.call('PATCH', '/api/v1/vaults/demo/sites/recovery', { capacity: { vcpus: 100_000, memoryMiB: 100_000_000, diskGiB: 100_000_000 } });
    expect(site.status, JSON.stringify(site.body)).toBe(200);
  });
  afterAll(async () => {
    const store = await ReplicaStore.open(new FilesystemBackend(storeDir()), { create: true });
    const verified = await verifyStore(store);
    expect(verified.problems).toEqual([]);
    await v.cleanup();
    figure('R9', { fuzzedRequests: requests, replications: machines, storeProblems: verified.problems.length });
  });

  /** A fresh machine and replication for each generated run. */
  const newReplication = async (): Promise<string> => {
    const name = `fz${++machines}`;
    await v.call('POST', '/api/v1/vaults/demo/agents/register', {
      site: 'primary', agentVersion: 't',
      machine: { name, hostname: name, os: 'linux', cpus: 1, memoryMiB: 64, disks: [{ name: 'disk0', sizeBytes: 4 * CHUNK }], boot: { kind: 'disk' } },
    });
    const rep = await v.call<{ id: string }>('POST', '/api/v1/vaults/demo/replications', { machine: name, policy: 'default', targetSite: 'recovery' });
    expect(rep.status, JSON.stringify(rep.body)).toBe(201);
    return rep.body.id;
  };
  const call = async (method: string, url: string, payload?: unknown, headers: Record<string, string> = {}) => {
    requests++;
    const r = await v.call<{ error?: { code: string; message: string; latestPointId?: string | null } } & Record<string, unknown>>(method, url, payload, headers);
    expect(r.status, `${method} ${url}: ${JSON.stringify(r.body)}`).toBeLessThan(500);
    if (r.status >= 400) expect(r.body.error?.message, JSON.stringify(r.body)).toBeTruthy();
    return r;
  };
  const missing = async (rep: string, hashes: string[]) =>
    (await call('POST', `/replicator/v1/replications/${rep}/chunks/missing`, { hashes })).body.missing as string[];

  const uploadArb = fc.record({
    content: fc.nat({ max: 4 }),
    other: fc.nat({ max: 4 }),
    kind: fc.constantFrom('whole', 'wrong-name', 'zstd', 'zstd-unlabelled', 'zstd-garbage', 'patch-zero', 'patch-base', 'patch-unknown-base', 'patch-garbage', 'gzip', 'bad-name', 'flipped', 'truncated', 'empty'),
    at: fc.nat(),
  });

  it('answers every generated chunk upload as the protocol says and stores nothing under a wrong name', async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: 1_000_000 }), fc.array(uploadArb, { minLength: 1, maxLength: 25 }), async (seed, uploads) => {
        const rep = await newReplication();
        const pool = contents(seed);
        const stored = new Set<string>();
        for (const u of uploads) {
          const data = pool[u.content] as Buffer;
          const other = pool[u.other] as Buffer;
          const zero = data.every((b) => b === 0);
          let name = chunkHash(data);
          let body: Buffer = data;
          const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
          let expected: Status;
          const ok = zero ? 400 : 204; // zero chunks are never stored
          switch (u.kind) {
            case 'whole': expected = ok; break;
            case 'wrong-name': name = chunkHash(Buffer.concat([other, Buffer.from('x')])); expected = 400; break;
            case 'zstd': body = compress(data); headers['content-encoding'] = 'zstd'; expected = ok; break;
            case 'zstd-unlabelled': body = compress(data); expected = 400; break;
            case 'zstd-garbage': body = Buffer.from(data.subarray(0, 100)); headers['content-encoding'] = 'zstd'; expected = 400; break;
            case 'patch-zero': body = encodePatch(data, [[0, data.length]]); Object.assign(headers, { 'content-type': PATCH, 'x-refuge-patch-base': 'zero', 'x-refuge-chunk-length': String(data.length) }); expected = ok; break;
            case 'patch-base': {
              // The runs cover the whole chunk, so whatever the base holds the result is `data`, if the store has it.
              const base = chunkHash(other);
              body = encodePatch(data, [[0, data.length]]);
              Object.assign(headers, { 'content-type': PATCH, 'x-refuge-patch-base': base, 'x-refuge-chunk-length': String(data.length) });
              // A base of another length is refused (a patch rebuilds a chunk of its base's length).
              expected = (await missing(rep, [base])).length > 0 ? 412 : other.length !== data.length ? 400 : ok;
              break;
            }
            case 'patch-unknown-base': body = encodePatch(data, [[0, Math.min(4096, data.length)]]); Object.assign(headers, { 'content-type': PATCH, 'x-refuge-patch-base': sha(Buffer.from(`nope${u.at}`)), 'x-refuge-chunk-length': String(data.length) }); expected = 412; break;
            case 'patch-garbage': body = Buffer.from(data.subarray(0, 13)); Object.assign(headers, { 'content-type': PATCH, 'x-refuge-patch-base': 'zero', 'x-refuge-chunk-length': String(data.length) }); expected = 400; break;
            case 'gzip': headers['content-encoding'] = 'gzip'; expected = 400; break;
            case 'bad-name': name = ['../etc/passwd', 'ABC', name.toUpperCase(), `${name}0`, 'x'.repeat(64)][u.at % 5] as string; expected = u.at % 5 === 0 ? 404 : 400; break; // '..' leaves the route: no route
            case 'flipped': body = Buffer.from(data); body[u.at % body.length] = (body[u.at % body.length] as number) ^ 0x40; expected = 400; break;
            case 'truncated': body = data.subarray(0, u.at % data.length); expected = 400; break;
            default: body = Buffer.alloc(0); expected = 400;
          }
          const wellNamed = /^[0-9a-f]{64}$/.test(name);
          const before = wellNamed ? await missing(rep, [name]) : [];
          const r = await call('PUT', `/replicator/v1/replications/${rep}/chunks/${encodeURIComponent(name).replace(/%2F/g, '/')}`, body, headers);
          expect(r.status, `${u.kind}: ${JSON.stringify(r.body)}`).toBe(expected);
          if (r.status === 204) stored.add(name);
          // Accepted: stored from now on. Refused: exactly as stored (or not) as before; never stored by a bad upload.
          if (wellNamed) expect(await missing(rep, [name])).toEqual(r.status === 204 ? [] : before);
        }
        // Every chunk the store acknowledged reads back, once committed, as exactly the bytes of its name.
        if (stored.size > 0) {
          // Full chunks first, the short one (if any) last, on a disk sized to hold exactly them.
          const lengthOf = (h: string) => (pool.find((c) => chunkHash(c) === h) as Buffer).length;
          const order = [...stored].sort((a, b) => lengthOf(b) - lengthOf(a));
          const changes = order.map((h, i) => [i, h]);
          const sizeBytes = order.reduce((n, h) => n + lengthOf(h), 0);
          const commit = await call('POST', `/replicator/v1/replications/${rep}/points`, { parentId: null, capturedAt: new Date().toISOString(), consistency: 'crash', disks: [{ name: 'disk0', sizeBytes, changes }] });
          expect(commit.status, JSON.stringify(commit.body)).toBe(201);
          const store = await ReplicaStore.open(new FilesystemBackend(storeDir()));
          for (const h of stored) expect(chunkHash(await store.getChunk(h))).toBe(h);
        }
      }),
      { numRuns: fuzzRuns(60) },
    );
  }, fuzzTimeoutMs(90_000));

  interface DiskModel { sizeBytes: number; chunks: Map<number, string | null> }
  interface PointModel { id: string; parentId: string | null; capturedAt: string; disks: Map<string, DiskModel> }

  const commitArb = fc.record({
    parent: fc.constantFrom('latest', 'latest', 'latest', 'older', 'none', 'random', 'malformed'),
    replay: fc.boolean(),
    time: fc.constantFrom('fresh', 'fresh', 'fresh', 'invalid'),
    disks: fc.array(
      fc.record({
        name: fc.constantFrom('disk0', 'disk0', 'disk1', 'Bad/Name'),
        size: fc.constantFrom(4 * CHUNK, 4 * CHUNK, 2 * CHUNK + 100, 1, 0),
        changes: fc.array(fc.tuple(fc.oneof({ weight: 8, arbitrary: fc.nat({ max: 4 }) }, { weight: 1, arbitrary: fc.constantFrom(-1, 1.5, 2 ** 40) }), fc.nat({ max: 6 })), { maxLength: 5 }),
      }),
      { minLength: 0, maxLength: 3 },
    ),
    uploadFirst: fc.boolean(),
  });

  it('answers every generated commit as the protocol says; every point restores to what its commits said', async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: 1_000_000 }), fc.array(commitArb, { minLength: 1, maxLength: 12 }), async (seed, commits) => {
        const rep = await newReplication();
        const pool = contents(seed);
        const hashes = pool.map((c) => (c.every((b) => b === 0) ? null : chunkHash(c)));
        const bytesOf = new Map(pool.map((c) => [chunkHash(c), c]));
        const points: PointModel[] = [];
        let clock = Date.now() - 3600_000 + seed;
        for (const c of commits) {
          const latest = points.at(-1);
          const parentId = { latest: latest?.id ?? null, older: points.at(-2)?.id ?? null, none: null, random: 'pt_0mwwd5axj_aaaaaaaa', malformed: '../../etc/passwd' }[c.parent];
          const capturedAt = c.time === 'invalid' ? 'yesterday' : new Date((clock += 1000)).toISOString();
          const disks = c.disks.map((d) => ({ name: d.name, sizeBytes: d.size, changes: d.changes.map(([i, h]) => [i, h === 5 ? 'f'.repeat(64) : h === 6 ? 'nothex' : hashes[h]] as [number, string | null]) }));
          let body: Record<string, unknown> = { parentId, capturedAt, consistency: 'crash', disks };
          if (c.replay && latest) body = { parentId: latest.parentId, capturedAt: latest.capturedAt, consistency: 'crash', disks };
          if (c.uploadFirst) {
            for (const h of new Set(disks.flatMap((d) => d.changes.map(([, x]) => x)))) {
              const data = h ? bytesOf.get(h) : undefined;
              if (h && data) expect((await call('PUT', `/replicator/v1/replications/${rep}/chunks/${h}`, data, { 'content-type': 'application/octet-stream' })).status).toBe(204);
            }
          }
          const expected = await expectedCommit(rep, body, latest, pool);
          const r = await call('POST', `/replicator/v1/replications/${rep}/points`, body);
          expect(r.status, `${JSON.stringify(body)}: ${JSON.stringify(r.body)}`).toBe(expected.status);
          if (r.status === 409) expect(r.body.error?.latestPointId).toBe(latest?.id ?? null);
          if (r.status === 201 && expected.replayOf) expect(r.body.pointId).toBe(expected.replayOf);
          if (r.status === 201 && !expected.replayOf) points.push({ id: r.body.pointId as string, parentId: body.parentId as string | null, capturedAt: new Date(body.capturedAt as string).toISOString(), disks: applyModel(latest, disks) });
        }
        // The store holds exactly the points the model committed, and each restores to what its commits said.
        if (!existsSync(join(storeDir(), 'refuge-store.json'))) return void expect(points).toEqual([]); // no commit ever reached it
        const store = await ReplicaStore.open(new FilesystemBackend(storeDir()));
        expect(await store.listPointIds(rep)).toEqual(points.map((p) => p.id));
        for (const p of points) {
          const manifest = await store.getPoint(rep, p.id);
          expect(manifest.disks.map((d) => d.name).sort()).toEqual([...p.disks.keys()].sort());
          for (const [name, d] of p.disks) {
            const want = Buffer.alloc(d.sizeBytes);
            for (const [i, h] of d.chunks) if (h) (bytesOf.get(h) as Buffer).copy(want, i * CHUNK, 0, Math.min(CHUNK, d.sizeBytes - i * CHUNK));
            const out = join(v.dataDir, `restore-${p.id}-${name}.raw`);
            await store.materialize(manifest, name, out, { sync: false });
            expect((await readFile(out)).equals(want), `${p.id} ${name}`).toBe(true);
          }
        }
      }),
      { numRuns: fuzzRuns(40) },
    );
  }, fuzzTimeoutMs(90_000));

  it('regressions of what fuzzing found: duplicate disks, chunks of the wrong length, an index listed twice, resizes that strand a chunk', async () => {
    const rep = await newReplication();
    const [full, , , short] = contents(7) as [Buffer, Buffer, Buffer, Buffer];
    for (const c of [full, short]) expect((await call('PUT', `/replicator/v1/replications/${rep}/chunks/${chunkHash(c)}`, c, { 'content-type': 'application/octet-stream' })).status).toBe(204);
    const commit = (parentId: string | null, disks: unknown[]) => call('POST', `/replicator/v1/replications/${rep}/points`, { parentId, capturedAt: new Date().toISOString(), consistency: 'crash', disks });
    const twice = await commit(null, [{ name: 'disk0', sizeBytes: CHUNK, changes: [] }, { name: 'disk0', sizeBytes: CHUNK, changes: [] }]);
    expect([twice.status, twice.body.error?.message]).toEqual([400, "disk 'disk0' is listed twice"]);
    const misplaced = await commit(null, [{ name: 'disk0', sizeBytes: 2 * CHUNK, changes: [[0, chunkHash(short)]] }]);
    expect([misplaced.status, misplaced.body.error?.message]).toEqual([400, `disk 'disk0': chunk ${chunkHash(short)} has 100 bytes where chunk 0 holds ${CHUNK}`]);
    // An index listed twice takes its last listing (as the tree does): the first need not fit.
    const first = await commit(null, [{ name: 'disk0', sizeBytes: 2 * CHUNK + 100, changes: [[0, chunkHash(short)], [0, chunkHash(full)], [2, chunkHash(short)]] }]);
    expect(first.status, JSON.stringify(first.body)).toBe(201);
    const grown = await commit(first.body.pointId as string, [{ name: 'disk0', sizeBytes: 4 * CHUNK, changes: [] }]);
    expect([grown.status, grown.body.error?.message]).toEqual([400, `disk 'disk0' was resized from ${2 * CHUNK + 100} to ${4 * CHUNK} bytes: chunk 2 changes length and must be listed`]);
    const relisted = await commit(first.body.pointId as string, [{ name: 'disk0', sizeBytes: 4 * CHUNK, changes: [[2, null]] }]);
    expect(relisted.status).toBe(201);
    const grownFull = await commit(relisted.body.pointId as string, [{ name: 'disk0', sizeBytes: 4 * CHUNK, changes: [[1, chunkHash(full)]] }]);
    expect(grownFull.status).toBe(201);
    const shrunk = await commit(grownFull.body.pointId as string, [{ name: 'disk0', sizeBytes: CHUNK + 100, changes: [] }]);
    expect([shrunk.status, shrunk.body.error?.message]).toEqual([400, `disk 'disk0' was resized from ${4 * CHUNK} to ${CHUNK + 100} bytes: chunk 1 changes length and must be listed`]);
    const store = await ReplicaStore.open(new FilesystemBackend(storeDir()));
    const out = join(v.dataDir, 'grown.raw');
    await store.materialize(await store.getPoint(rep, relisted.body.pointId as string), 'disk0', out, { sync: false });
    // (the point restored below is the one before chunk 1 was filled)
    const want = Buffer.alloc(4 * CHUNK);
    full.copy(want);
    expect((await readFile(out)).equals(want)).toBe(true);
  });

  /** The answer docs/protocol.md gives a commit: schema, then parent (or a replay), then chunk indexes, then missing chunks. */
  async function expectedCommit(rep: string, body: Record<string, unknown>, latest: PointModel | undefined, pool: Buffer[]): Promise<{ status: Status; replayOf?: string }> {
    const disks = body.disks as { name: string; sizeBytes: number; changes: [number, string | null][] }[];
    const schemaOk = typeof body.parentId !== 'string' || (body.parentId).length <= 64;
    const valid = schemaOk && !Number.isNaN(Date.parse(body.capturedAt as string)) && disks.length >= 1 &&
      disks.every((d) => /^[a-z0-9][a-z0-9-]*$/.test(d.name) && d.sizeBytes >= 1 && d.changes.every(([i, h]) => Number.isInteger(i) && i >= 0 && (h === null || /^[0-9a-f]{64}$/.test(h))));
    if (!valid) return { status: 400 };
    if ((body.parentId ?? null) !== (latest?.id ?? null)) {
      if (latest && latest.parentId === body.parentId && latest.capturedAt === new Date(body.capturedAt as string).toISOString()) return { status: 201, replayOf: latest.id };
      return { status: 409 };
    }
    if (new Set(disks.map((d) => d.name)).size !== disks.length) return { status: 400 };
    if (disks.some((d) => d.changes.some(([i]) => i >= Math.ceil(d.sizeBytes / CHUNK)))) return { status: 400 };
    const referenced = [...new Set(disks.flatMap((d) => d.changes.map(([, h]) => h)).filter((h): h is string => h !== null))];
    if (referenced.length > 0 && (await missing(rep, referenced)).length > 0) return { status: 412 };
    // Every chunk of the new point, listed or carried over from the parent, must fill its place exactly.
    const length = (h: string) => (pool.find((c) => chunkHash(c) === h) ?? Buffer.alloc(CHUNK)).length;
    for (const [name, d] of applyModel(latest, disks)) {
      void name;
      for (const [i, h] of d.chunks) if (h !== null && length(h) !== Math.min(CHUNK, d.sizeBytes - i * CHUNK)) return { status: 400 };
    }
    return { status: 201 };
  }

  function applyModel(parent: PointModel | undefined, disks: { name: string; sizeBytes: number; changes: [number, string | null][] }[]): Map<string, DiskModel> {
    const out = new Map<string, DiskModel>();
    for (const d of disks) {
      const base = parent?.disks.get(d.name);
      const count = Math.ceil(d.sizeBytes / CHUNK);
      const chunks = new Map<number, string | null>();
      if (base) for (const [i, h] of base.chunks) if (i < count) chunks.set(i, h);
      for (const [i, h] of d.changes) chunks.set(i, h);
      out.set(d.name, { sizeBytes: d.sizeBytes, chunks });
    }
    return out;
  }
});
