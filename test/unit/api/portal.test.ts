import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestVault, type TestVault } from '../../helpers/test-vault.js';

/** The vault serves the built portal (dist/portal) at `/`, without a token, and nothing else from that folder. */
describe('web portal files', () => {
  let v: TestVault;
  beforeAll(async () => {
    v = await createTestVault();
  });
  afterAll(async () => v.cleanup());

  it('serves index.html and its hashed assets without a token, and refuses paths outside the assets', async () => {
    const index = await v.app.inject({ method: 'GET', url: '/' });
    expect(index.statusCode).toBe(200);
    expect(index.headers['content-type']).toMatch(/^text\/html/);
    const asset = /src="\.\/(assets\/[^"]+\.js)"/.exec(index.body)?.[1];
    expect(asset).toBeDefined();
    const js = await v.app.inject({ method: 'GET', url: `/${asset}` });
    expect(js.statusCode).toBe(200);
    expect(js.headers['cache-control']).toContain('immutable');
    for (const url of ['/assets/..%2F..%2Fpackage.json', '/assets/%2E%2E%2Findex.html', '/assets/nothing.js']) {
      const r = await v.app.inject({ method: 'GET', url });
      expect([400, 403, 404], url).toContain(r.statusCode);
      expect(r.body).not.toContain('"name": "refuge"');
    }
  });
});
