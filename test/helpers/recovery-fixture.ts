import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../src/core/processes.js';
import { GUEST_CMDLINE, ensureDemoGuest } from '../../src/fabric/demo-guest.js';
import { chunkHash } from './chunk-name.js';
import { CHUNK, type TestVault } from './test-vault.js';
import type { StoreLocation } from '../../src/store/backends/open-backend.js';
import type { Site } from '../../src/vault/model.js';

export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/**
 * A disk the demo guest recognizes as a recovered copy: an ext2 filesystem holding the guest's marker, its data
 * and their checksum (what the guest wrote on a first boot), made with `mke2fs -d` without mounting anything.
 */
export async function guestDiskImage(sizeMiB: number, marker: string, dataMiB = 4): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), 'refuge-guestdisk-'));
  try {
    await mkdir(join(dir, 'root', 'refuge'), { recursive: true });
    const data = randomBytes(dataMiB * 1024 * 1024);
    await writeFile(join(dir, 'root', 'refuge', 'data'), data);
    await writeFile(join(dir, 'root', 'refuge', 'checksums'), `${sha256(data)}  data\n`);
    await writeFile(join(dir, 'root', 'refuge', 'marker'), `${marker}\n`);
    const image = join(dir, 'disk.img');
    const r = await run('mke2fs', ['-F', '-q', '-t', 'ext2', '-d', join(dir, 'root'), image, `${sizeMiB}M`], { timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(`mke2fs failed: ${r.stderr}`);
    return await readFile(image);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A data disk the guest never touches: random extents among zeros (zeros are never stored). */
export function dataDisk(sizeMiB: number): Buffer {
  const disk = Buffer.alloc(sizeMiB * 1024 * 1024);
  for (let at = 0; at < disk.length; at += 3 * 1024 * 1024) randomBytes(1024 * 1024).copy(disk, at);
  return disk;
}

/**
 * Vault `demo` with sites `primary` and `recovery` (with `recoveryNetworks`), policy `default`, and machine `vm1`
 * (the demo guest, kernel boot) replicated to `recovery` with one committed point holding `disks`, uploaded through
 * the replicator endpoints as an agent would. Returns the replication and point ids.
 */
export async function protectGuest(
  v: TestVault,
  disks: { name: string; content: Buffer }[],
  o: { cmdline?: string; recoveryStore?: StoreLocation; nics?: { name: string; network: string; ipv4?: string }[]; recoveryNetworks?: { name: string; cidr?: string; addresses: number }[] } = {},
): Promise<{ replicationId: string; pointId: string }> {
  const ok = <T>(r: { status: number; body: T }): T => {
    if (r.status >= 300) throw new Error(`setup call failed: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  };
  const guest = await ensureDemoGuest();
  ok(await v.call('POST', '/api/v1/vaults', { name: 'demo' }));
  ok(await v.call('POST', '/api/v1/vaults/demo/sites', { name: 'primary', networks: [{ name: 'lan', cidr: '10.1.0.0/24', addresses: 200 }] }));
  const recovery = ok(await v.call<Site>('POST', '/api/v1/vaults/demo/sites', { name: 'recovery', networks: o.recoveryNetworks ?? [] }));
  if (o.recoveryStore) {
    // The recovery site keeps its replica store elsewhere (e.g. an object store), set before anything is stored.
    await v.repos.db.updateTable('sites').set({ configJson: JSON.stringify({ ...recovery.config, store: o.recoveryStore }) }).where('id', '=', recovery.id).execute();
  }
  ok(await v.call('POST', '/api/v1/vaults/demo/policies', { name: 'default', crashIntervalSeconds: 1 }));
  ok(
    await v.call('POST', '/api/v1/vaults/demo/agents/register', {
      site: 'primary',
      agentVersion: '0.3.0',
      machine: {
        name: 'vm1', hostname: 'vm1', os: 'linux', cpus: 1, memoryMiB: 256,
        disks: disks.map((d) => ({ name: d.name, sizeBytes: d.content.length })),
        boot: { kind: 'kernel', kernel: guest.kernel, initrd: guest.initrd, cmdline: o.cmdline ?? GUEST_CMDLINE },
        ...(o.nics ? { nics: o.nics } : {}),
      },
    }),
  );
  const rep = ok(await v.call<{ id: string }>('POST', '/api/v1/vaults/demo/replications', { machine: 'vm1', policy: 'default', targetSite: 'recovery' }));
  const changes = [];
  for (const d of disks) {
    const list: [number, string][] = [];
    for (let i = 0; i < d.content.length / CHUNK; i++) {
      const data = d.content.subarray(i * CHUNK, (i + 1) * CHUNK);
      if (data.every((b) => b === 0)) continue;
      const hash = chunkHash(data);
      const put = await v.call('PUT', `/replicator/v1/replications/${rep.id}/chunks/${hash}`, data, { 'content-type': 'application/octet-stream' });
      if (put.status !== 204) throw new Error(`chunk upload failed: ${JSON.stringify(put.body)}`);
      list.push([i, hash]);
    }
    changes.push({ name: d.name, sizeBytes: d.content.length, changes: list });
  }
  const point = ok(await v.call<{ pointId: string }>('POST', `/replicator/v1/replications/${rep.id}/points`, { parentId: null, capturedAt: new Date().toISOString(), consistency: 'crash', disks: changes }));
  return { replicationId: rep.id, pointId: point.pointId };
}
