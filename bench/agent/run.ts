/**
 * The agent's benchmarks (issue 4), one command: `npm run bench:agent` (options: --size-mib 2048 --rounds 3
 * --seconds 10 --dir var/bench-agent). Each target of ../shared/docs/performance.md is measured in the same run as
 * its anchor, medians over the rounds, and the results replace the agent section of docs/benchmarks.md.
 *
 * - P4: NBD write path with change tracking on vs nbdkit's file plugin (fio's nbd engine).
 * - P3: cdp point committed after a cut, 1% churn of the standard image.
 * - P9: bytes on the wire per byte written, 8 KiB random writes.
 * - P5: RPO under 20 MB/s of random writes (real `refuge vault` and `refuge agent` processes, fio through NBD).
 */
import { execFileSync } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, release } from 'node:os';
import { P3_NOTES, P4_NOTES, P5_NOTES } from './notes.js';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { benchCdpPoints } from './cdp-point.js';
import { measureCutPause } from './cut-pause.js';
import { FIO_JOBS, benchWritePath, summarize } from './nbd-write-path.js';
import { benchRpo } from './rpo.js';
import type { StoreFormat } from '../../src/store/store-config.js';

const root = join(import.meta.dirname, '..', '..');
/** Stand-ins for the parts a partial run (--only) skips; such a run prints its figures and writes no docs. */
const NO_POINT = { commitSeconds: [], agentSeconds: [], readBytes: [0], wireBytes: [], replicatorCpu: [], writtenBytes: 1, median: 0, agentMedian: 0, replicatorCpuMedian: 0, wirePerWritten: 0 };
const NO_POINTS = { seedSeconds: 0, p3: NO_POINT, p9: NO_POINT };
const { values } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '2048' },
    rounds: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '10' },
    dir: { type: 'string', default: join(root, 'var', 'bench-agent') },
    'p5-seconds': { type: 'string', default: '90' },
    /**
     * P5 runs once per policy chunk size (KiB): the store's default, and chunks the size of the writes; a size with
     * `f2` or `f3` runs into a store of that format (the default is the store's default, 3; docs/design-delta-points.md).
     */
    'p5-chunks': { type: 'string', default: '256,256f3,8' },
    /** P3/P9 under a policy of this chunk size (KiB) instead of the store's default (for a partial run's comparison). */
    'p3-chunk-kib': { type: 'string' },
    /** A full run measures P3 a second time under a policy of this chunk size (KiB): the churn's 64 KiB blocks. */
    'p3-policy-kib': { type: 'string', default: '64' },
    /** P3/P9 and P5 into a replica store of this format (2 or 3: leaf-digest names); a partial run's comparison. */
    'store-format': { type: 'string' },
    'no-write': { type: 'boolean', default: false },
    /** Comma-separated parts to run (p4, p3 (with p9), p5); a partial run prints and never writes the docs. */
    only: { type: 'string', default: 'p4,p3,p5' },
  },
});
const parts = new Set(values.only.split(',').map((p) => p.trim().toLowerCase()));
for (const p of parts) if (!['p4', 'p3', 'p9', 'p5'].includes(p)) throw new Error(`--only: '${p}' is not a part (p4, p3, p5)`);
const partial = !(parts.has('p4') && (parts.has('p3') || parts.has('p9')) && parts.has('p5')) || values['p3-chunk-kib'] !== undefined || values['store-format'] !== undefined;
const storeFormat = values['store-format'] ? { storeFormat: Number(values['store-format']) as StoreFormat } : {};
const sizeBytes = Number(values['size-mib']) * 1024 * 1024;
const rounds = Number(values.rounds);
const seconds = Number(values.seconds);
const dir = values.dir;
const say = (s: string) => process.stdout.write(`${s}\n`);

const loadAtStart = loadavg();
await mkdir(dir, { recursive: true });
say('building (the vault runs from dist/)');
execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });

say(`P4: NBD write path, ${rounds} rounds of ${seconds} s per job and server`);
const p4 = parts.has('p4') ? await benchWritePath(dir, rounds, seconds, say) : [];
const [kit, tracked, cutting] = p4.map(summarize);
// P4 leaves about a GiB of its image dirty in the page cache: written back while P3 runs, it slowed P3's points
// by a third (0.81 s against 0.59 s run alone, 2026-12-02). Drop the image and let writeback finish first.
await rm(join(dir, 'p4.raw'), { force: true });
execFileSync('sync');
say(`P3 and P9: cdp points on the ${values['size-mib']} MiB standard image, ${rounds} rounds`);
const points = parts.has('p3') || parts.has('p9') ? await benchCdpPoints(dir, sizeBytes, rounds, say, { p9: parts.has('p9') || !partial, ...storeFormat, ...(values['p3-chunk-kib'] ? { chunkSizeKiB: Number(values['p3-chunk-kib']) } : {}) }) : NO_POINTS;
await rm(join(dir, 'vault'), { recursive: true, force: true });
const policyKiB = Number(values['p3-policy-kib']);
say(`P3 under a policy of ${policyKiB} KiB chunks`);
const small = parts.has('p3') && !partial ? (await benchCdpPoints(dir, sizeBytes, rounds, say, { p9: false, chunkSizeKiB: policyKiB })).p3 : NO_POINT;
await rm(join(dir, 'vault'), { recursive: true, force: true });
say(`P5: RPO under 20 MB/s of random 8 KiB writes, ${values['p5-seconds']} s`);
const p5s = [];
for (const spec of parts.has('p5') ? values['p5-chunks'].split(',') : []) {
  const kib = Number.parseInt(spec, 10);
  const named = /f([234])$/.exec(spec);
  const format = named ? { storeFormat: Number(named[1]) as StoreFormat } : storeFormat;
  say(`  policy chunk size ${kib} KiB${format.storeFormat ? `, store format ${format.storeFormat}` : ''}`);
  const r = await benchRpo(dir, sizeBytes, { seconds: Number(values['p5-seconds']), warmupSeconds: 15, intervalSeconds: 5, chunkSizeKiB: kib, ...format, say });
  say(`  RPO p50 ${r.p50.toFixed(1)} s, p99 ${r.p99.toFixed(1)} s, max ${r.max.toFixed(1)} s; ${r.points} points; seed ${r.seedSeconds.toFixed(0)} s`);
  p5s.push(r);
  for (const d of ['p5-vault', 'p5-agent', 'p5.raw']) await rm(join(dir, d), { recursive: true, force: true });
}
say('Cut pause on a 1 TiB disk');
const pause = measureCutPause(dir, 20_000, 5);
say(`  ${pause.milliseconds.toFixed(2)} ms to cut ${pause.chunks} written chunks`);

const pct = (a: number, b: number) => `${Math.round((100 * a) / b)}%`;
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const command = `npm run bench:agent -- --size-mib ${values['size-mib']} --rounds ${rounds} --seconds ${seconds}`;
const section = `<!-- bench:agent:start -->
## Agent: cdp capture, NBD write path, shipping (issue 4)

Command: \`${command}\` (bench/agent/run.ts). Machine: ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), Linux ${release()},
${new Date().toISOString().slice(0, 10)}, load average ${loadAtStart.map((l) => l.toFixed(1)).join(' ')} at the start (machine shared). Medians of ${rounds} rounds; anchors measured in the same run, servers alternating within each round.
Absolute figures are context (shared, noisy machine); the ratios are the result.

### P4: NBD write path with change tracking on (fio --ioengine=nbd, ${seconds} s per job, 1 GiB allocated image)

| server | 4 KiB random write, depth 16 (IOPS) | 1 MiB sequential write, depth 16 (MB/s) |
|---|---|---|
| nbdkit file plugin (anchor) | ${fmt(kit?.randIops ?? 0)} | ${fmt(kit?.seqMBps ?? 0)} |
| refuge agent, tracking on | ${fmt(tracked?.randIops ?? 0)} (**${pct(tracked?.randIops ?? 0, kit?.randIops ?? 1)}**; target >= 80%) | ${fmt(tracked?.seqMBps ?? 0)} (**${pct(tracked?.seqMBps ?? 0, kit?.seqMBps ?? 1)}**; target >= 90%) |
| refuge agent, tracking on, a cut every 2 s (frozen chunks read and hashed: copy-on-write active) | ${fmt(cutting?.randIops ?? 0)} (${pct(cutting?.randIops ?? 0, kit?.randIops ?? 1)}) | ${fmt(cutting?.seqMBps ?? 0)} (${pct(cutting?.seqMBps ?? 0, kit?.seqMBps ?? 1)}) |

Per round (IOPS; MB/s): ${p4.map((r) => `${r.server}: ${r.randIops.map(fmt).join(', ')}; ${r.seqMBps.map(fmt).join(', ')}`).join(' | ')}.
fio jobs: \`${FIO_JOBS.rand.join(' ')}\` and \`${FIO_JOBS.seq.join(' ')}\`.

${P4_NOTES}

### P3: cdp point committed after the cut, 1% churn (${values['size-mib']} MiB standard image)

The workload (${(points.p3.writtenBytes / 1048576).toFixed(0)} MiB in 64 KiB blocks) is written through the agent's NBD export; the time runs
from the cut to the replicator's commit answer (a \`refuge vault\` process over HTTPS with mutual TLS: in-process
replicator, filesystem store; the agent's shipping code in the benchmark process).

| measure | result | target |
|---|---|---|
| point committed after the cut (median) | **${points.p3.median.toFixed(3)} s** (rounds: ${points.p3.commitSeconds.map((s) => s.toFixed(3)).join(', ')}) | <= 0.5 s |
| of which the agent's share: cut to every chunk read, hashed, patched and compressed (uploads discarded) | ${points.p3.agentMedian.toFixed(3)} s | - |
| CPU time of the vault process for the point (replicator, store, worker threads; median) | ${points.p3.replicatorCpuMedian.toFixed(2)} s (rounds: ${points.p3.replicatorCpu.map((s) => s.toFixed(2)).join(', ')}) | - |
| disk read at the source | ${(points.p3.readBytes[0] ?? 0) / 1048576} MiB of ${values['size-mib']} MiB (only the chunks written) | no full read of the disk |
| bytes on the wire / bytes written | ${points.p3.wirePerWritten.toFixed(3)} | - |
| point committed after the cut under a policy of ${policyKiB} KiB chunks (the churn's block size; median) | **${small.median.toFixed(3)} s** (rounds: ${small.commitSeconds.map((s) => s.toFixed(3)).join(', ')}) | <= 0.5 s |
| under that policy: vault CPU per point, agent's share, disk read | ${small.replicatorCpuMedian.toFixed(2)} s, ${small.agentMedian.toFixed(3)} s, ${((small.readBytes[0] ?? 0) / 1048576).toFixed(0)} MiB | - |
| seeding the image (context) | ${points.seedSeconds.toFixed(1)} s | - |
| the cut's swap of the dirty bitmap, which writes wait for (as for the writes in flight, at most 16 per connection, before it), 1 TiB disk, ${pause.chunks} chunks written | ${pause.milliseconds.toFixed(2)} ms | "no I/O pause beyond milliseconds" |

${P3_NOTES}

### P9: bytes on the wire per byte written, 8 KiB random writes

${(points.p9.writtenBytes / 1048576).toFixed(0)} MiB of 8 KiB random writes (random bytes) spread over the image, then one point; bytes counted by a TCP proxy
between agent and replicator, both directions, HTTP framing, chunk queries and the commit included.

| measure | result | target |
|---|---|---|
| bytes on the wire per byte written (median) | **${points.p9.wirePerWritten.toFixed(3)}** (rounds: ${points.p9.wireBytes.map((b) => (b / points.p9.writtenBytes).toFixed(3)).join(', ')}) | <= 2 |
| point committed after the cut | ${points.p9.median.toFixed(3)} s | - |

### P5: RPO under sustained random writes (${values['size-mib']} MiB standard image)

\`refuge vault\` and \`refuge agent --capture cdp\` processes; fio writes random 8 KiB blocks at 20 MB/s through the
agent's NBD export for ${values['p5-seconds']} s; policy: a point every 5 s, with the chunk size of each row; the vault's RPO sampled every
0.5 s after 15 s of load. Target: p99 <= 15 s (ASR: a crash point every 5 min).

| policy chunk size | RPO p99 | RPO p50 / max (samples) | points during the load | MB written | seeding the image (context) |
|---|---|---|---|---|---|
${p5s.map((r) => `| ${r.chunkSizeKiB ?? 256} KiB${r.storeFormat ? `, store format ${r.storeFormat}` : ''} | **${r.p99.toFixed(1)} s** | ${r.p50.toFixed(1)} / ${r.max.toFixed(1)} s (${r.samples.length}) | ${r.points} | ${r.writtenMB.toFixed(0)} | ${r.seedSeconds.toFixed(0)} s |`).join('\n')}

${P5_NOTES}
<!-- bench:agent:end -->`;

say('');
say(section);
if (!values['no-write'] && !partial) {
  const path = join(root, 'docs', 'benchmarks.md');
  const current = await readFile(path, 'utf8').catch(() => '# Benchmarks\n\nResults of the `bench/` harnesses (targets and method: ../shared/docs/performance.md).\n');
  const re = /<!-- bench:agent:start -->[\s\S]*<!-- bench:agent:end -->/;
  await writeFile(path, re.test(current) ? current.replace(re, section) : `${current.trimEnd()}\n\n${section}\n`);
  say(`written to ${path}`);
}
