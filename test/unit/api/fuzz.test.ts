import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestVault, protectWithPoint, seedConfiguration, type TestVault } from '../../helpers/test-vault.js';

/**
 * Thousands of random and malformed requests against every route, as the owner (so they reach validation and the
 * handlers): whatever comes in, the answer is a 2xx or a 4xx with an error body, never a 5xx, and the vault keeps
 * answering. The seed is fixed, so a failure reproduces.
 */
describe('API fuzz', () => {
  let v: TestVault;
  beforeAll(async () => {
    v = await createTestVault();
    await seedConfiguration(v);
    await protectWithPoint(v);
  });
  afterAll(async () => v.cleanup());

  const segment = fc.oneof(
    fc.constantFrom('demo', 'vm1', 'primary', 'recovery', 'default', 'job_0mwwd5axj_aaaaaaaa', '..', '%2e%2e', 'A', '', 'x'.repeat(300), '%00', '0'.repeat(64)),
    fc.string({ maxLength: 20 }).map(encodeURIComponent),
  );
  const json = fc.oneof(
    fc.jsonValue({ maxDepth: 3 }),
    fc.record({ name: fc.oneof(fc.string(), fc.constantFrom('ok', 'vm1', '../x')), point: fc.oneof(fc.string(), fc.constant('latest')), capacity: fc.jsonValue(), groups: fc.jsonValue(), password: fc.string() }, { requiredKeys: [] }),
  );
  const body = fc.oneof(json.map((j) => JSON.stringify(j)), fc.string({ maxLength: 200 }), fc.constant('{"a":'), fc.constant(''));

  it('never answers 5xx to random requests on any route', async () => {
    const routes = v.app.routeTable.filter((r) => r.method !== 'HEAD' && r.permission !== 'public');
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: routes.length - 1 }), fc.array(segment, { minLength: 6, maxLength: 6 }), body, fc.constantFrom('application/json', 'text/plain', 'application/octet-stream'), async (n, segs, payload, type) => {
        const route = routes[n] as (typeof routes)[number];
        let i = 0;
        const url = route.url.replace(/:[a-zA-Z]+/g, () => segs[i++] ?? 'x');
        const r = await v.app.inject({ method: route.method as 'GET', url, headers: { authorization: `Bearer ${v.ownerToken}`, 'content-type': type }, ...(route.method === 'GET' ? {} : { payload }) });
        statuses.set(r.statusCode, (statuses.get(r.statusCode) ?? 0) + 1);
        if (r.statusCode >= 500) throw new Error(`${route.method} ${url} ${payload.slice(0, 100)} -> ${r.statusCode} ${r.body}`);
        if (r.statusCode >= 400 && !(r.json<{ error?: { message?: string } }>().error?.message ?? '')) throw new Error(`no error message: ${route.method} ${url} -> ${r.statusCode} ${r.body}`);
      }),
      { numRuns: 2000, seed: 20261125 },
    );
    expect([...statuses.keys()].some((s) => s >= 400)).toBe(true);
    expect((await v.call('GET', '/api/v1/vaults/demo/replications/vm1')).status).toBe(200);
  });
});
