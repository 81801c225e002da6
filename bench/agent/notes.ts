/**
 * The prose of the agent section of docs/benchmarks.md that does not come from the run itself: where the time
 * goes, as found by profiling (`BENCH_PROFILE=DIR` runs the vault under `node --cpu-prof`; `BENCH_DEBUG=1` prints
 * each point's phases and CPU time). Kept apart from run.ts so the figures and their reading are edited separately.
 */

export const P3_NOTES = `Where the time goes (profiles of the vault with \`BENCH_PROFILE=DIR\`, phases and CPU per point with
\`BENCH_DEBUG=1\`): the store already wrote uploads into packs with one sync per commit, and the commit itself takes
0.05-0.3 s. Until 2026-12-01 each chunk was its own HTTPS request, and the replicator's main thread spent per
chunk: authenticating the client certificate and finding the replication's store (six SQL queries), TLS and HTTP,
reading and decompressing and hash-checking the base, applying the patch, and copying the rebuilt chunk to a worker
thread (structured clone), with the garbage collection all that allocation caused: 4-5 ms of vault CPU per patched
chunk. Now chunks travel up to 256 to a request (\`POST /chunks/batch\`, docs/protocol.md), and a patched chunk is
rebuilt on the store's worker threads (base decoded and checked, patch applied, hashed, compressed there); the main
thread only reads the base's stored bytes. The vault's CPU per patched chunk is about half what it was, and what
remains is mostly the worker's intrinsic work (zstd level 3 of the rebuilt 256 KiB chunk, two SHA-256) and the
main thread's base reads (open, read, close of the pack per chunk) and garbage collection.
The target is still not met here: the wall time is several times the CPU time because the 2-core machine is shared
(see the load average above); on an idle machine the vault's CPU figure above is the floor of the commit time.
Next steps: base reads straight from the pack file in the worker (no buffer through the main thread), a cache of
recently stored chunks as bases (a cdp disk rewrites the same chunks point after point), a cheaper compression level
for chunks that will be rewritten soon.`;

export const P5_NOTES = `20 MB/s of random 8 KiB writes dirty most of the 8,192 256 KiB chunks of a 2 GiB disk within a few 5 s
intervals: each point reads and hashes every dirtied chunk at the agent (over a GiB while fio writes) and rebuilds
thousands of chunks at the replicator (about 2 ms of CPU each after the changes above, see P3), on the same 2 shared
cores; a point takes tens of seconds and the RPO follows. Not met. The per-chunk work is the lever: smaller chunks
for cdp replications (work per written byte), base reads without the main thread, and a cheaper compression level.`;
