/**
 * The prose of the agent section of docs/benchmarks.md that does not come from the run itself: where the time
 * goes, as found by profiling (`BENCH_PROFILE=DIR` runs the vault under `node --cpu-prof`; `BENCH_DEBUG=1` prints
 * each point's phases and CPU time). Kept apart from run.ts so the figures and their reading are edited separately.
 */

export const P4_NOTES = `The NBD write path (src/nbd, src/agent/cdp) is unchanged since the 2026-11-25 run, which measured 114% and 99% of
the anchor; the ratios of a run fall with the machine's load (the anchor is multi-threaded C, the agent one
JavaScript thread serving NBD): compare runs at similar load averages.`;

export const P3_NOTES = `Where the time goes (profiles of the vault with \`BENCH_PROFILE=DIR\`, phases and CPU per point with
\`BENCH_DEBUG=1\`): the store already wrote uploads into packs with one sync per commit, and the commit itself takes
0.05-0.3 s. Until 2026-12-01 each chunk was its own HTTPS request, and the replicator's main thread spent per
chunk: authenticating the client certificate and finding the replication's store (six SQL queries), TLS and HTTP,
reading and decompressing and hash-checking the base, applying the patch, and copying the rebuilt chunk to a worker
thread (structured clone), with the garbage collection all that allocation caused: 4-5 ms of vault CPU per patched
chunk. Now chunks travel up to 256 to a request (\`POST /chunks/batch\`, docs/protocol.md), and a patched chunk is
rebuilt on the store's worker threads (base decoded and checked, patch applied, hashed, compressed there); the main
thread only reads the base's stored bytes. Measured on 2026-12-01 with the code before these changes (load average
about 13): a P3 point took 1.15-1.84 s of vault CPU (3.6-4.0 s wall), a P9 point of ~2,200 patches 9.9-11.1 s of
vault CPU; with them (the run at load average 8 that afternoon), 0.79 s for P3 and 4.0-4.5 s for P9: per patched
chunk about 2 ms instead of 4.5. What remains is mostly the worker's intrinsic work (zstd level 3 of the rebuilt 256 KiB chunk, two
SHA-256), and on the main thread the base reads (open, read, close of a pack per chunk) and garbage collection.
The target is not met, and would not be on an idle 2-core machine either: the vault's CPU per point above, spread
over two cores, plus the agent's share, stays above 0.5 s; on a shared machine (the load average above) the wall
time is longer still.
Since then (2026-12-01, evening): batches are resumable (the replicator stores each entry as it arrives; a cut
link costs the entries on the wire, not the batch: docs/protocol.md), which changes nothing here, and the store's
worker rebuilds a patched chunk in the base's own bytes and sends it back without a copy (two 256 KiB allocations
and copies fewer per patched chunk). A profile of the vault over the P3 points (\`BENCH_PROFILE\`, 1 GiB image, load
average about 13) still shows on the main thread garbage collection (~0.35 s per point), the base reads
(open, read, close of a pack per chunk: ~0.25 s) and posting tasks to the workers; in the workers, copies, zstd and
SHA-256. The commit (tree, pack sync, manifest) takes 0.35 s of the point at that load.
Quiet re-measurement (2026-12-01 22:00 UTC, load average 2-4, nothing else running): P3 0.91 s median
(0.82-1.34 s; 2.72 s in the helper's run at load 11-16, 1.29 s at load 8), of which the agent's share 0.18 s and
0.93 s of vault CPU per point: the commit is now about 2x the target instead of 4-5x, and the rest is the vault's
per-chunk CPU described above.
Next steps: base reads straight from the pack file in the worker (no buffer through the main thread, an open pack
kept open), a cache of recently stored chunks as bases (a cdp disk rewrites the same chunks point after point), a
cheaper compression level for chunks that will be rewritten soon.`;

export const P5_NOTES = `20 MB/s of random 8 KiB writes dirty most of the 8,192 256 KiB chunks of a 2 GiB disk within a few 5 s
intervals: each point reads and hashes every dirtied chunk at the agent (over a GiB while fio writes) and rebuilds
thousands of chunks at the replicator (about 2 ms of CPU each after the changes above, see P3), on the same 2 shared
cores; a point takes tens of seconds and the RPO follows. Not met: 65 s p99 with 3 points in 90 s on the quiet machine (on a loaded one fio does not
even keep up its 20 MB/s, and one point commits in 90 s). The per-chunk work is the lever: smaller chunks
for cdp replications (work per written byte), base reads without the main thread, and a cheaper compression level.`;
