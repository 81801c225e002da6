import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TEST_DATABASES } from '../../helpers/databases.js';
import { createTestVault, protectWithPoint, seedConfiguration, type TestVault } from '../../helpers/test-vault.js';

/** Bad input gets a clear, specific error and changes nothing: 404 unknown, 400 naming the field, 409 with allowed operations. */
describe.each(TEST_DATABASES)('API bad input on %s', (database) => {
  let v: TestVault;
  beforeEach(async () => {
    v = await createTestVault(database);
    await seedConfiguration(v);
  });
  afterEach(async () => v.cleanup());

  type ErrorBody = { error: { code: string; message: string; field?: string; allowedOperations?: string[] } };

  it.each([
    ['GET', '/api/v1/vaults/nope', "vault 'nope' not found"],
    ['GET', '/api/v1/vaults/demo/sites/nowhere', "site 'nowhere' not found"],
    ['GET', '/api/v1/vaults/demo/machines/ghost', "machine 'ghost' not found"],
    ['GET', '/api/v1/vaults/demo/replications/ghost', "replication 'ghost' not found"],
    ['GET', '/api/v1/vaults/demo/policies/ghost', "policy 'ghost' not found"],
    ['GET', '/api/v1/vaults/demo/jobs/job_0mwwd5axj_aaaaaaaa', "job 'job_0mwwd5axj_aaaaaaaa' not found"],
    ['POST', '/api/v1/vaults/demo/replications/ghost/failover', "replication 'ghost' not found"],
    ['GET', '/api/v1/no/such/route', 'no route GET /api/v1/no/such/route'],
  ])('%s %s answers 404 naming what is missing', async (method, url, message) => {
    const r = await v.call<ErrorBody>(method, url, method === 'POST' ? {} : undefined);
    expect(r.status).toBe(404);
    expect(r.body.error.code).toBe('not_found');
    expect(r.body.error.message).toBe(message);
  });

  it('answers 404 for a point that does not exist', async () => {
    await protectWithPoint(v);
    const r = await v.call<ErrorBody>('GET', '/api/v1/vaults/demo/replications/vm1/points/pt_0mwwd5axj_aaaaaaaa');
    expect(r.status).toBe(404);
    expect(r.body.error.message).toContain('pt_0mwwd5axj_aaaaaaaa');
  });

  it.each([
    ['POST', '/api/v1/vaults', { name: 'Bad/Name' }, '/body/name', 'must match pattern'],
    ['POST', '/api/v1/vaults', { name: '../etc' }, '/body/name', 'must match pattern'],
    ['POST', '/api/v1/vaults', {}, '/body/name', 'is required'],
    ['POST', '/api/v1/vaults', { name: 'ok', color: 'red' }, '/body/color', 'is not a known field'],
    ['POST', '/api/v1/vaults/demo/policies', { name: 'p', crashIntervalSeconds: '5' }, '/body/crashIntervalSeconds', 'must be number'],
    ['POST', '/api/v1/vaults/demo/policies', { name: 'p', crashIntervalSeconds: 0 }, '/body/crashIntervalSeconds', 'must be >= 1'],
    ['POST', '/api/v1/vaults/demo/sites', { name: 's', capacity: { vcpus: -1, memoryMiB: 1, diskGiB: 1 } }, '/body/capacity/vcpus', 'must be >= 0'],
    ['POST', '/api/v1/vaults/demo/replications', { machine: 'vm1', policy: 'default' }, '/body/targetSite', 'is required'],
    ['GET', '/api/v1/vaults/Not_A_Name', undefined, '/params/vault', 'must match pattern'],
    ['GET', '/api/v1/vaults/demo/jobs/not-an-id', undefined, '/params/job', 'must match pattern'],
  ])('%s %s with a bad field answers 400 naming it', async (method, url, body, field, message) => {
    const r = await v.call<ErrorBody>(method, url, body);
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('invalid_argument');
    expect(r.body.error.field).toBe(field);
    expect(r.body.error.message).toContain(field);
    expect(r.body.error.message).toContain(message);
  });

  it('answers 400 for malformed JSON and changes nothing', async () => {
    const r = await v.call<ErrorBody>('POST', '/api/v1/vaults', '{"name": "x"', { 'content-type': 'application/json' });
    expect(r.status).toBe(400);
    expect(r.body.error.message).toMatch(/JSON/);
    const vaults = await v.call<{ items: unknown[] }>('GET', '/api/v1/vaults');
    expect(vaults.body.items).toHaveLength(1);
  });

  it('answers 413 for an oversize body', async () => {
    const r = await v.call<ErrorBody>('POST', '/api/v1/vaults', { name: 'x', pad: 'a'.repeat(2 * 1024 * 1024) });
    expect(r.status).toBe(413);
    expect(r.body.error.code).toBe('payload_too_large');
  });

  it('answers 409 for a duplicate name', async () => {
    const r = await v.call<ErrorBody>('POST', '/api/v1/vaults/demo/sites', { name: 'primary' });
    expect(r.status).toBe(409);
    expect(r.body.error.message).toBe("site 'primary' already exists");
  });

  it('refuses a replication whose target is the machine\'s own site', async () => {
    const r = await v.call<ErrorBody>('POST', '/api/v1/vaults/demo/replications', { machine: 'vm1', policy: 'default', targetSite: 'primary' });
    expect(r.status).toBe(400);
    expect(r.body.error.field).toBe('/body/targetSite');
  });

  it('answers 409 listing the allowed operations when an operation does not fit the state', async () => {
    await v.call('POST', '/api/v1/vaults/demo/replications', { machine: 'vm1', policy: 'default', targetSite: 'recovery' });
    for (const op of ['failover', 'test-failover', 'commit', 'test-failover-cleanup']) {
      const r = await v.call<ErrorBody>('POST', `/api/v1/vaults/demo/replications/vm1/${op}`, op.endsWith('failover') ? {} : undefined);
      expect(r.status, op).toBe(409);
      expect(r.body.error.code).toBe('operation_not_allowed');
      expect(r.body.error.allowedOperations).toEqual(['resync', 'repair', 'disable']);
      expect(r.body.error.message).toContain('seeding');
    }
    const rep = await v.call<{ state: string; activeJobId: null }>('GET', '/api/v1/vaults/demo/replications/vm1');
    expect(rep.body.state).toBe('seeding');
    expect(rep.body.activeJobId).toBeNull();
  });

  it('rejects an unknown point choice for failover with 400', async () => {
    await protectWithPoint(v);
    const r = await v.call<ErrorBody>('POST', '/api/v1/vaults/demo/replications/vm1/failover', { point: 'yesterday' });
    expect(r.status).toBe(400);
    expect(r.body.error.field).toMatch(/^\/body/);
  });
});
