import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobView } from '../../../src/vault/jobs/definitions.js';
import { CHUNK, createTestVault, protectWithPoint, seedConfiguration, type TestVault } from '../../helpers/test-vault.js';

/** The OpenAPI document covers every API route; /metrics exposes RPO, health, bytes and job durations. */
describe('OpenAPI and metrics', () => {
  let v: TestVault;
  beforeAll(async () => {
    v = await createTestVault();
    await seedConfiguration(v);
    await protectWithPoint(v);
  });
  afterAll(async () => v.cleanup());

  it('serves an OpenAPI 3 document at /api/docs with every route of /api/v1', async () => {
    const r = await v.call<{ openapi: string; paths: Record<string, Record<string, unknown>> }>('GET', '/api/docs');
    expect(r.status).toBe(200);
    expect(r.body.openapi).toMatch(/^3\./);
    const documented = new Set(Object.entries(r.body.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`)));
    const routes = v.app.routeTable.filter((x) => x.url.startsWith('/api/v1') && x.method !== 'HEAD').map((x) => `${x.method} ${x.url.replace(/:([a-zA-Z]+)/g, '{$1}')}`);
    expect(routes.filter((x) => !documented.has(x))).toEqual([]);
    expect(routes.length).toBeGreaterThan(60);
  });

  it('exports Prometheus metrics: RPO per replication, health counts, bytes received, job durations, process memory', async () => {
    const job = await v.call<JobView>('POST', '/api/v1/vaults/demo/replications/vm1/test-failover', {});
    await v.engine.waitFor(job.body.id);
    const r = await v.app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${v.ownerToken}` } });
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-type']).toContain('text/plain');
    const text = r.body;
    expect(text).toMatch(/refuge_replication_rpo_seconds\{vault="demo",replication="vm1"\} \d/);
    expect(text).toMatch(/refuge_replications\{vault="demo",health="(normal|warning|critical)"\} 1/);
    // protectWithPoint uploads two non-zero chunks
    expect(text).toMatch(new RegExp(`refuge_replicator_received_bytes\\{replication="rep_[^"]+"\\} ${2 * CHUNK}\\b`));
    // The latest point's churn, for the replication and for each of its disks (the seed changed those two chunks).
    expect(text).toMatch(new RegExp(`refuge_replication_churn_bytes\\{vault="demo",replication="vm1"\\} ${2 * CHUNK}\\b`));
    expect(text).toMatch(new RegExp(`refuge_disk_churn_bytes\\{vault="demo",replication="vm1",disk="disk0"\\} ${2 * CHUNK}\\b`));
    const points = await v.call<{ items: { diskChurn: unknown }[] }>('GET', '/api/v1/vaults/demo/replications/vm1/points');
    expect(points.body.items.map((p) => p.diskChurn)).toEqual([[{ name: 'disk0', changedBytes: 2 * CHUNK }]]);
    expect(text).toMatch(/refuge_job_duration_seconds_count\{type="test-failover",state="succeeded"\} 1/);
    // The process's own figures: resident memory and V8 heap, as this process measures them itself.
    const rss = Number(/^process_resident_memory_bytes (\d+)$/m.exec(text)?.[1]);
    expect(Math.abs(rss - process.memoryUsage().rss)).toBeLessThan(process.memoryUsage().rss / 2);
    expect(text).toMatch(/^nodejs_heap_size_used_bytes \d+/m);
    const anonymous = await v.app.inject({ method: 'GET', url: '/metrics' });
    expect(anonymous.statusCode).toBe(401);
  });
});
