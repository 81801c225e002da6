import type { ChunkHashes } from '../../src/agent/chunk-hashes.js';
import { execFile } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CdpCapture } from '../../src/agent/capture/cdp-capture.js';
import { ReplicatorClient, VaultClient } from '../../src/agent/clients.js';
import { ChunkUploader } from '../../src/agent/shipping/chunk-uploader.js';
import { shipCut } from '../../src/agent/shipping/ship-cut.js';
import { LeafDigestFile } from '../../src/agent/leaf-digests.js';
import type { ReplicationAssignment } from '../../src/protocol/schemas.js';
import { NBD, RawNbdClient } from '../../test/helpers/agent/raw-nbd-client.js';
import { CountingProxy } from './counting-proxy.js';
import { startBenchVault } from './bench-vault.js';
import type { StoreFormat } from '../../src/store/store-config.js';
import { cpuSeconds, median } from './measure.js';
import { ensureStandardImage, onePercentChurn, randomWrites } from './standard-image.js';

const MiB = 1024 * 1024;

export interface PointResult {
  /** Cut -> commit answered, seconds, per round. */
  commitSeconds: number[];
  /** Cut -> every listed chunk read, hashed, encoded and compressed, uploads discarded: the agent's own share. */
  agentSeconds: number[];
  /** Bytes of the disk read at the source per round (hashing), and bytes on the wire (both directions, HTTP included). */
  readBytes: number[];
  wireBytes: number[];
  /** CPU seconds the vault process (replicator, store and its worker threads) spent per round, cut to commit. */
  replicatorCpu: number[];
  writtenBytes: number;
}

/**
 * P3 and P9 with the real pieces: a `refuge vault` process (in-process replicator, filesystem store), and in this
 * process the agent's cdp capture on the standard image with the agent's shipping code (the same calls the agent's
 * loop makes), talking to the replicator through a byte-counting TCP proxy. The workload is written through the
 * agent's NBD export, then one cut is timed from the cut to the replicator's commit answer.
 */
export async function benchCdpPoints(dir: string, sizeBytes: number, rounds: number, say: (s: string) => void, o: { p9?: boolean; chunkSizeKiB?: number; storeFormat?: StoreFormat } = {}) {
  const image = join(dir, 'standard.raw');
  // A pristine image and an empty store each run: earlier runs' writes must neither linger nor deduplicate.
  await rm(image, { force: true });
  await rm(join(dir, 'vault'), { recursive: true, force: true });
  await rm(join(dir, 'p3-state'), { recursive: true, force: true });
  await ensureStandardImage(image, sizeBytes);
  // BENCH_PROFILE=DIR: the vault runs under `node --cpu-prof`; BENCH_VAULT_FLAGS adds node flags (say --trace-gc), and
  // BENCH_VAULT_LOG=FILE keeps the vault's output.
  const nodeArgs = [...(process.env.BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : []), ...(process.env.BENCH_VAULT_FLAGS?.split(' ').filter(Boolean) ?? [])];
  const vault = await startBenchVault(join(dir, 'vault'), { crashIntervalSeconds: 5, nodeArgs, ...(o.chunkSizeKiB ? { chunkSizeKiB: o.chunkSizeKiB } : {}), ...(o.storeFormat ? { storeFormat: o.storeFormat } : {}) });
  const socketPath = join(dir, 'p3.sock');
  const capture = new CdpCapture({ disks: [{ name: 'disk0', path: image, socketPath }], stateDir: join(dir, 'p3-state') });
  let proxy: CountingProxy | undefined;
  let nbd: RawNbdClient | undefined;
  let leafDigests: { disk0: LeafDigestFile } | undefined;
  try {
    const identity = await vault.registerMachine('vm', join(dir, 'p3-state', 'agent'));
    const machine = { name: 'vm', hostname: 'h', os: 'linux', cpus: 1, memoryMiB: 128, disks: [{ name: 'disk0', sizeBytes }], boot: { kind: 'disk' as const } };
    const vaultClient = new VaultClient(vault.url, 'bench', () => identity.connection);
    await vaultClient.register({ site: 'primary', agentVersion: 'bench', machine });
    await vault.api('POST', '/vaults/bench/replications', { machine: 'vm', policy: 'p', targetSite: 'recovery' });
    const a = (await vaultClient.heartbeat('vm', { agentVersion: 'bench' })).replication as ReplicationAssignment;
    const target = new URL(a.replicatorUrl);
    proxy = await CountingProxy.start(target.hostname, Number(target.port));
    const client = new ReplicatorClient(`https://127.0.0.1:${proxy.port}${target.pathname}`, a.replicationId, identity.connection);
    await capture.start();
    nbd = await RawNbdClient.attach(socketPath);

    // As the agent does for a store of leaf-digest names (agent/leaf-digests.ts): only the written leaves are read.
    leafDigests = a.naming === 'leaf16' ? { disk0: await LeafDigestFile.open(join(dir, 'p3-state'), 'disk0') } : undefined;
    let parent: string | null = null;
    let base: Record<string, ChunkHashes> = {};
    let handle = 0n;
    /** The agent's own share of a point: read, hash, build patches, compress, with uploads discarded. The cut is then abandoned, so the next cut ships the same chunks. */
    const agentSide = async () => {
      const discard = new ChunkUploader({ missing: async (h) => h, putChunk: async () => undefined, commit: () => Promise.reject(new Error('not used')) });
      const started = performance.now();
      const cut = await capture.cut({ chunkSize: a.chunkSize, everyChunk: parent === null });
      await shipCut(cut, { chunkSize: a.chunkSize, naming: a.naming ?? 'sha256', base, uploader: discard });
      const seconds = (performance.now() - started) / 1000;
      await cut.abandon();
      return seconds;
    };
    const point = async () => {
      const uploader = new ChunkUploader(client, { askAboutPatches: parent === null }); // as the agent: its last cut committed
      const before = proxy?.total ?? 0;
      const vaultCpu = await cpuSeconds(vault.child.pid as number);
      const ownCpu = process.cpuUsage();
      const started = performance.now();
      const cut = await capture.cut({ chunkSize: a.chunkSize, everyChunk: parent === null });
      const shipped = await shipCut(cut, { chunkSize: a.chunkSize, naming: a.naming ?? 'sha256', ...(leafDigests ? { leafDigests } : {}), base, uploader });
      const uploaded = performance.now();
      const r = await client.commit({ parentId: parent, capturedAt: cut.capturedAt.toISOString(), consistency: 'crash', disks: shipped.disks });
      const seconds = (performance.now() - started) / 1000;
      const replicatorCpu = (await cpuSeconds(vault.child.pid as number)) - vaultCpu;
      const own = process.cpuUsage(ownCpu);
      if (process.env.BENCH_DEBUG) say(`    read+hash+upload ${((uploaded - started) / 1000).toFixed(3)} s, commit ${((performance.now() - uploaded) / 1000).toFixed(3)} s, ${uploader.stats.patches} patches ${uploader.stats.whole} whole; CPU: vault ${replicatorCpu.toFixed(2)} s, agent ${((own.user + own.system) / 1e6).toFixed(2)} s`);
      await cut.complete();
      parent = r.pointId;
      base = shipped.hashes;
      return { seconds, readBytes: shipped.readBytes, wireBytes: (proxy?.total ?? 0) - before, replicatorCpu };
    };
    const write = async (writes: [number, Buffer][]) => {
      for (const [offset, data] of writes) nbd?.request(NBD.cmd.write, ++handle, offset, data.length, 0, data);
      for (let i = 0; i < writes.length; i++) if ((await nbd?.reply())?.error !== 0) throw new Error('NBD write failed');
      nbd?.request(NBD.cmd.flush, ++handle, 0, 0);
      await nbd?.reply();
    };

    const seed = await point();
    say(`  seeding ${sizeBytes / MiB} MiB: ${seed.seconds.toFixed(2)} s, ${(seed.wireBytes / MiB).toFixed(0)} MiB on the wire`);
    const p3: PointResult = { commitSeconds: [], agentSeconds: [], readBytes: [], wireBytes: [], replicatorCpu: [], writtenBytes: 0 };
    const p9: PointResult = { commitSeconds: [], agentSeconds: [], readBytes: [], wireBytes: [], replicatorCpu: [], writtenBytes: 0 };
    for (let round = 1; round <= rounds; round++) {
      // Each round starts settled: the round before wrote hundreds of MB of packs (P9's point), whose writeback
      // would otherwise run during this round's point, as P4's image did (run.ts). P3 is one point after 1% churn.
      await promisify(execFile)('sync');
      const churn = onePercentChurn(sizeBytes, round);
      await write(churn);
      p3.agentSeconds.push(await agentSide());
      const r3 = await point();
      p3.writtenBytes = churn.reduce((n, [, d]) => n + d.length, 0);
      p3.commitSeconds.push(r3.seconds);
      p3.readBytes.push(r3.readBytes);
      p3.wireBytes.push(r3.wireBytes);
      p3.replicatorCpu.push(r3.replicatorCpu);
      say(`  round ${round} P3 1% churn (${(p3.writtenBytes / MiB).toFixed(0)} MiB in 64 KiB blocks): committed ${r3.seconds.toFixed(3)} s after the cut (agent's share ${(p3.agentSeconds.at(-1) ?? 0).toFixed(3)} s), read ${(r3.readBytes / MiB).toFixed(0)} MiB, ${(r3.wireBytes / MiB).toFixed(1)} MiB on the wire`);
      if (o.p9 === false) continue;
      const small = randomWrites(sizeBytes, 8192, Math.round((20 * MiB * sizeBytes) / (2048 * MiB) / 8192), 100 + round);
      await write(small);
      const r9 = await point();
      p9.writtenBytes = small.reduce((n, [, d]) => n + d.length, 0);
      p9.commitSeconds.push(r9.seconds);
      p9.readBytes.push(r9.readBytes);
      p9.wireBytes.push(r9.wireBytes);
      p9.replicatorCpu.push(r9.replicatorCpu);
      say(`  round ${round} P9 ${small.length} random 8 KiB writes: ${(r9.wireBytes / p9.writtenBytes).toFixed(3)} bytes on the wire per byte written (committed ${r9.seconds.toFixed(3)} s after the cut)`);
    }
    return {
      seedSeconds: seed.seconds,
      p3: { ...p3, replicatorCpuMedian: median(p3.replicatorCpu), median: median(p3.commitSeconds), agentMedian: median(p3.agentSeconds), wirePerWritten: median(p3.wireBytes) / p3.writtenBytes },
      p9: { ...p9, median: median(p9.commitSeconds), wirePerWritten: median(p9.wireBytes) / p9.writtenBytes },
    };
  } finally {
    nbd?.close();
    await leafDigests?.disk0.close().catch(() => undefined);
    await capture.stop().catch(() => undefined);
    await proxy?.close();
    await vault.stop();
    if (process.env.BENCH_VAULT_LOG) await writeFile(process.env.BENCH_VAULT_LOG, vault.child.output());
  }
}
