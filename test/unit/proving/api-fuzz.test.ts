import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../../src/core/errors.js';
import { MAX_COMMIT_BYTES, MAX_STAGE_BODY_BYTES } from '../../../src/replicator/routes.js';
import { figure } from '../../helpers/figures.js';
import { fuzzRuns, fuzzTimeoutMs } from '../../helpers/fuzz.js';
import { createTestVault, protectWithPoint, seedConfiguration, type TestVault } from '../../helpers/test-vault.js';

/** The bits of an OpenAPI 3 / JSON schema the generator reads. */
interface Schema {
  type?: string | string[];
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema | Schema[];
  anyOf?: Schema[];
  oneOf?: Schema[];
  allOf?: Schema[];
  enum?: unknown[];
  const?: unknown;
  pattern?: string;
  format?: string;
  minimum?: number;
  maximum?: number;
  minItems?: number;
  maxLength?: number;
}
interface Operation {
  method: string;
  path: string;
  params: string[];
  body?: Schema;
}

/** Names and ids the vault holds (so generated requests reach deep into routes), and hostile values for any of them. */
const KNOWN = ['demo', 'primary', 'recovery', 'default', 'vm1', 'job_0mwwd5axj_aaaaaaaa', 'pt_0mwwd5axj_aaaaaaaa', 'a'.repeat(64)];
const HOSTILE = ['..', '../etc/passwd', '%2e%2e%2fetc', 'Demo', 'x'.repeat(101), 'x'.repeat(5000), 'a b', '%00', 'ü', '-', "'; drop table vaults; --", '{}', 'owner/../owner'];

const anyJson = fc.jsonValue({ maxDepth: 2 });

/** Values for a schema: mostly valid, sometimes wrong in one place (type, range, pattern, unknown field, missing field). */
function arb(s: Schema | undefined, depth = 0): fc.Arbitrary<unknown> {
  if (!s || depth > 4) return anyJson;
  const wrong = fc.oneof(anyJson, fc.constantFrom(null, -1, 1e308, '', 'x'.repeat(3000), [], {}, true), fc.constantFrom(...HOSTILE));
  const valid = validArb(s, depth);
  return fc.oneof({ weight: 40, arbitrary: valid }, { weight: 1, arbitrary: wrong });
}

function validArb(s: Schema, depth: number): fc.Arbitrary<unknown> {
  const alternatives = s.anyOf ?? s.oneOf;
  if (alternatives && alternatives.length > 0) return fc.oneof(...alternatives.map((x) => arb(x, depth + 1)));
  if (s.allOf && s.allOf.length > 0) return arb(s.allOf[0], depth + 1);
  if (s.const !== undefined) return fc.constant(s.const);
  if (s.enum) return fc.constantFrom(...s.enum);
  const type = Array.isArray(s.type) ? s.type[0] : s.type;
  switch (type) {
    case 'string':
      if (s.format === 'date-time') return fc.date({ min: new Date(2020, 0, 1), max: new Date(2030, 0, 1), noInvalidDate: true }).map((d) => d.toISOString());
      if (s.format === 'ipv4') return fc.ipV4();
      if (s.format === 'uri' || s.format === 'url') return fc.constantFrom('http://127.0.0.1:9/hook', 'https://127.0.0.1:9/x');
      if (s.format === 'email') return fc.constantFrom('ops@example.com');
      return fc.oneof(fc.constantFrom(...KNOWN, 'fz-one', 'fz-two'), fc.stringMatching(/^[a-z][a-z0-9-]{0,12}$/), fc.string({ maxLength: s.maxLength ?? 30 }));
    case 'integer':
      return fc.oneof(fc.integer({ min: s.minimum ?? -5, max: Math.min(s.maximum ?? 100_000, 1e9) }), fc.constantFrom(s.minimum ?? 0, s.maximum ?? 2 ** 53));
    case 'number':
      return fc.oneof(fc.double({ min: s.minimum ?? -5, max: Math.min(s.maximum ?? 1e6, 1e9), noNaN: true }), fc.constantFrom(s.minimum ?? 0, 0.5));
    case 'boolean':
      return fc.boolean();
    case 'null':
      return fc.constant(null);
    case 'array': {
      const items = Array.isArray(s.items) ? s.items : undefined;
      if (items) return fc.tuple(...items.map((x) => arb(x, depth + 1)));
      return fc.array(arb(s.items as Schema | undefined, depth + 1), { minLength: s.minItems ?? 0, maxLength: Math.max(s.minItems ?? 0, 3) });
    }
    case 'object':
    default: {
      const props = s.properties ?? {};
      const required = new Set(s.required ?? []);
      const record = fc.record(Object.fromEntries(Object.entries(props).map(([k, v]) => [k, arb(v, depth + 1)])), { requiredKeys: [...required].filter((k) => k in props) });
      // Unknown fields, and required ones dropped.
      return fc.oneof({ weight: 20, arbitrary: record }, { weight: 1, arbitrary: record.map((o) => ({ ...o, fuzzUnknown: 1 })) }, { weight: 1, arbitrary: record.map((o) => Object.fromEntries(Object.entries(o as object).slice(1))) });
    }
  }
}

/**
 * Fuzzing the vault's API (reliability R7) with requests generated from its own OpenAPI document, so a new route is
 * covered the day it is added: bodies drawn from each route's schema (mostly valid, sometimes wrong in one place),
 * path parameters that exist, do not, or are path-like, malformed JSON, wrong content types and huge bodies;
 * then invalid state transitions and concurrent conflicting operations. Every answer is a 2xx or a 4xx with a
 * precise error body (a known code, a message; 409 `operation_not_allowed` lists the allowed operations), never a
 * 5xx, and the vault keeps serving.
 */
describe('API fuzzing from the OpenAPI route table', () => {
  let v: TestVault;
  let operations: Operation[];
  let requests = 0;
  const statuses = new Map<number, number>();

  /** A fresh vault holding a protected machine: rounds start from it, since fuzzing may delete what it finds. */
  const freshVault = async () => {
    await v?.cleanup();
    v = await createTestVault();
    await seedConfiguration(v);
    await protectWithPoint(v);
  };
  beforeAll(async () => {
    await freshVault();
    const doc = (await v.call<{ paths: Record<string, Record<string, { parameters?: { in: string; name: string }[]; requestBody?: { content?: Record<string, { schema?: Schema }> } }>> }>('GET', '/api/docs')).body;
    operations = Object.entries(doc.paths).flatMap(([path, methods]) =>
      Object.entries(methods).map(([method, op]) => ({
        method: method.toUpperCase(),
        path,
        params: (op.parameters ?? []).filter((p) => p.in === 'path').map((p) => p.name),
        ...(op.requestBody?.content?.['application/json']?.schema ? { body: op.requestBody.content['application/json'].schema } : {}),
      })),
    );
  });
  afterAll(async () => {
    await v.cleanup();
    figure('R7', { fuzzedRequests: requests, operations: operations.length, statuses: Object.fromEntries([...statuses].sort(([a], [b]) => a - b)) });
  });

  /** One request; the answer must be a 2xx or a precise 4xx. */
  const send = async (method: string, url: string, payload?: unknown, headers: Record<string, string> = {}) => {
    const r = await v.call<{ error?: { code: string; message: string; allowedOperations?: unknown } }>(method, url, payload, headers);
    requests++;
    statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    const what = `${method} ${url} ${JSON.stringify(payload)?.slice(0, 300)} -> ${r.status} ${JSON.stringify(r.body).slice(0, 400)}`;
    expect(r.status, what).toBeLessThan(500);
    if (r.status >= 400) {
      expect(ERROR_CODES, what).toContain(r.body.error?.code);
      expect(r.body.error?.message, what).toMatch(/\S/);
      if (r.body.error?.code === 'operation_not_allowed') expect(Array.isArray(r.body.error.allowedOperations), what).toBe(true);
    }
    return r;
  };
  const fill = (op: Operation, values: string[]) => {
    let i = 0;
    return op.path.replace(/\{([^}]+)\}/g, () => encodeURIComponent(values[i++ % values.length] ?? 'x').replace(/%2F/gi, '/').replace(/%25/g, '%'));
  };
  const stillServing = async () => expect((await v.call('GET', '/api/v1/health')).status).toBe(200);

  it('reads the OpenAPI document of every route it fuzzes', () => {
    expect(operations.length).toBeGreaterThan(60);
    expect(operations.filter((o) => o.body).length).toBeGreaterThan(20);
  });

  it('answers generated requests to every route with a 2xx or a precise 4xx', async () => {
    const opArb = fc.integer({ min: 0, max: 10_000 }).map((i) => operations[i % operations.length] as Operation);
    const paramArb = fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...KNOWN) }, { weight: 2, arbitrary: fc.constantFrom(...HOSTILE) }, { weight: 1, arbitrary: fc.string({ minLength: 1, maxLength: 20 }) });
    for (let round = 0; round < 4; round++) {
      if (round > 0) await freshVault();
      await fc.assert(
        fc.asyncProperty(opArb.chain((op) => fc.tuple(fc.constant(op), fc.array(paramArb, { minLength: 1, maxLength: 4 }), arb(op.body))), async ([op, params, body]) => {
          await send(op.method, fill(op, params), op.body ? body : undefined);
        }),
        { numRuns: fuzzRuns(400) },
      );
      await stillServing();
    }
  }, fuzzTimeoutMs(300_000));

  it('answers malformed JSON, wrong content types and huge bodies on every route that takes a body with a 4xx', async () => {
    const withBody = operations.filter((o) => o.body);
    const malformed = fc.oneof(
      fc.constantFrom('{', '{"name": "x"', '[1,2', 'null', '"just a string"', '{"a":1}{"b":2}', '\u0000', '{"__proto__": {"admin": true}}', '{"constructor": {"prototype": {"x": 1}}}'),
      fc.string({ maxLength: 40 }),
    );
    await fc.assert(
      fc.asyncProperty(fc.nat(), malformed, fc.constantFrom('application/json', 'text/plain', 'application/x-www-form-urlencoded', 'application/xml', 'application/json; charset=latin1'), fc.nat({ max: 9 }).map((n) => n === 0), async (i, text, type, huge) => {
        const op = withBody[i % withBody.length] as Operation;
        // Huge: past the route's own limit (1 MiB; the commit route's 64 MiB, as it lists every chunk of a disk's seed;
        // a staged part's 16 MiB).
        const replicatorPost = op.method === 'POST' && op.path.startsWith('/replicator/');
        const limit = replicatorPost && op.path.endsWith('/points') ? MAX_COMMIT_BYTES : replicatorPost && op.path.endsWith('/points/staged') ? MAX_STAGE_BODY_BYTES : 1024 * 1024;
        const payload = huge ? `{"name":"${'x'.repeat(limit + 1024)}"}` : text;
        const r = await send(op.method, fill(op, KNOWN), payload, { 'content-type': type });
        if (huge && type === 'application/json') expect(r.status).toBe(413);
      }),
      { numRuns: fuzzRuns(300) },
    );
    await stillServing();
  }, fuzzTimeoutMs(120_000));

  it('answers invalid and concurrent conflicting operations with one winner and 409s listing what is allowed', async () => {
    const ops = ['test-failover', 'test-failover-cleanup', 'failover', 'commit', 'disable'];
    await freshVault();
    let acceptedInAll = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.constantFrom(...ops), { minLength: 2, maxLength: 5 }), async (batch) => {
        const rep = (await v.call<{ state: string; activeJobId: string | null }>('GET', '/api/v1/vaults/demo/replications/vm1')).body;
        const results = await Promise.all(batch.map((op) => send('POST', `/api/v1/vaults/demo/replications/vm1/${op}`, op.endsWith('failover') ? {} : undefined)));
        // Of concurrent operations at most one is accepted while a job runs: the state machine's compare-and-set.
        const accepted = results.filter((r) => r.status === 202 || r.status === 201 || r.status === 200);
        expect(accepted.length, `${rep.state}: ${batch.join(', ')} -> ${results.map((r) => r.status).join(', ')}`).toBeLessThanOrEqual(1);
        acceptedInAll += accepted.length;
        // Let an accepted job finish, so the next batch meets a settled state.
        for (let n = 0; n < 200; n++) {
          const now = (await v.call<{ activeJobId: string | null }>('GET', '/api/v1/vaults/demo/replications/vm1')).body;
          if (!now.activeJobId) break;
          await new Promise((r) => setTimeout(r, 25));
        }
      }),
      { numRuns: fuzzRuns(25) },
    );
    expect(acceptedInAll).toBeGreaterThan(0);
    await stillServing();
  }, fuzzTimeoutMs(120_000));
});
