/**
 * P7 (docs/performance.md), single machine: orchestration overhead of a recovery, from the command (the API call)
 * to the machine's qemu process running (QMP `running`), with instant recovery, for two disk sizes; the anchor,
 * measured in the same run, is the same recovery with restore-first (disks written out before the start), whose
 * overhead grows with the disk. A vault assembled in this process (SQLite, filesystem store, the qemu provider of
 * the site), the demo guest as the machine; test failovers, so each run can be cleaned up and repeated (the same
 * job tasks as a failover). Each point is imported into the store as `refuge store import` does (1 MiB of random
 * data every 4 MiB, zeros between). Run: `npx tsx bench/fabric/p7-instant.ts [--runs 3] [--sizes-mib 256,2048]`.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { sleep } from '../../src/core/durations.js';
import { GUEST_CMDLINE, ensureDemoGuest } from '../../src/fabric/demo-guest.js';
import { importImages } from '../../src/store/import-image.js';
import type { JobView } from '../../src/vault/jobs/definitions.js';
import { createTestVault } from '../../test/helpers/test-vault.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' }, 'sizes-mib': { type: 'string', default: '256,2048' } } });
const runs = Number(values.runs);
const sizes = (values['sizes-mib'] ?? '256,2048').split(',').map(Number);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

async function writeImage(path: string, sizeMiB: number): Promise<void> {
  const f = await open(path, 'w');
  try {
    await f.truncate(sizeMiB * 1024 * 1024);
    for (let mib = 0; mib < sizeMiB; mib += 4) await f.write(randomBytes(1024 * 1024), 0, 1024 * 1024, mib * 1024 * 1024);
  } finally {
    await f.close();
  }
}

async function main(): Promise<void> {
  const v = await createTestVault('sqlite', { realFabric: true });
  const work = await mkdtemp(join(tmpdir(), 'refuge-p7-'));
  const ok = <T>(r: { status: number; body: T }): T => {
    if (r.status >= 300) throw new Error(`${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  };
  try {
    const guest = await ensureDemoGuest();
    ok(await v.call('POST', '/api/v1/vaults', { name: 'demo' }));
    ok(await v.call('POST', '/api/v1/vaults/demo/sites', { name: 'primary' }));
    ok(await v.call('POST', '/api/v1/vaults/demo/sites', { name: 'recovery' }));
    ok(await v.call('POST', '/api/v1/vaults/demo/policies', { name: 'default' }));
    const vault = await v.repos.vaults.get('demo');
    const site = await v.repos.sites.get(vault.id, 'recovery');
    const store = await v.sites.store(site);
    const fabric = v.sites.fabric(site);
    for (const size of sizes) {
      const name = `vm${size}`;
      ok(await v.call('POST', '/api/v1/vaults/demo/agents/register', {
        site: 'primary', agentVersion: '0.1.0',
        machine: { name, hostname: name, os: 'linux', cpus: 1, memoryMiB: 128, disks: [{ name: 'disk0', sizeBytes: size * 1024 * 1024 }], boot: { kind: 'kernel', kernel: guest.kernel, initrd: guest.initrd, cmdline: GUEST_CMDLINE } },
      }));
      const rep = ok(await v.call<{ id: string }>('POST', '/api/v1/vaults/demo/replications', { machine: name, policy: 'default', targetSite: 'recovery' }));
      const image = join(work, `${name}.raw`);
      await writeImage(image, size);
      const m = await importImages(store, { replicationId: rep.id, disks: [{ name: 'disk0', path: image }], parent: null });
      await v.repos.replications.recordPoint({ id: m.id, replicationId: m.replicationId, parentId: null, capturedAt: m.capturedAt, committedAt: m.committedAt, consistency: m.consistency, changedBytes: m.stats.changedBytes, storedBytes: m.stats.storedBytes });
      await rm(image);
    }
    const results: { mode: string; sizeMiB: number; seconds: number[] }[] = [];
    for (const mode of ['instant', 'restore-first'] as const) {
      for (const size of sizes) {
        const name = `vm${size}`;
        const seconds: number[] = [];
        for (let r = 0; r < runs; r++) {
          const t0 = performance.now();
          const job = ok(await v.call<JobView>('POST', `/api/v1/vaults/demo/replications/${name}/test-failover`, { mode }));
          while ((await fabric.status(`${name}-test`)).state !== 'running') await sleep(20);
          seconds.push((performance.now() - t0) / 1000);
          const done = await v.engine.waitFor(job.id);
          if (done.state !== 'succeeded') throw new Error(`${mode} ${name}: ${JSON.stringify(done.error)}`);
          const cleanup = ok(await v.call<JobView>('POST', `/api/v1/vaults/demo/replications/${name}/test-failover-cleanup`, {}));
          await v.engine.waitFor(cleanup.id);
        }
        results.push({ mode, sizeMiB: size, seconds });
        process.stdout.write(`${JSON.stringify({ mode, sizeMiB: size, medianSeconds: Number(median(seconds).toFixed(2)), seconds: seconds.map((s) => Number(s.toFixed(2))) })}\n`);
      }
    }
  } finally {
    await v.cleanup();
    await rm(work, { recursive: true, force: true });
  }
}

await main();
