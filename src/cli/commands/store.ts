import { resolve } from 'node:path';
import type { Command } from 'commander';
import { RefugeError } from '../../core/errors.js';
import { formatBytes, formatSeconds, parseDuration } from '../../core/durations.js';
import { collectGarbage } from '../../store/gc.js';
import { importImages } from '../../store/import-image.js';
import { storeStats } from '../../store/inspect.js';
import { prunePoints } from '../../store/prune.js';
import { repairStore } from '../../store/repair.js';
import type { ReplicaStore } from '../../store/replica-store.js';
import { asrRetention } from '../../store/retention.js';
import { verifyStore } from '../../store/verify.js';
import { STORE_FORMATS, type StoreFormat } from '../../store/store-config.js';
import { globals } from '../context.js';
import { printFields, printJson, printTable, say } from '../output.js';
import { ProgressLine, bar, bytesProgress } from '../progress.js';
import { addStoreOptions, openStoreFromOptions, type StoreOptions } from './store-location.js';

/** `refuge store ...`: work on a replica store directly, without a vault (e.g. at a recovery site on its own). */

async function pointId(s: ReplicaStore, replication: string, id: string): Promise<string> {
  if (id !== 'latest') return id;
  const latest = (await s.listPointIds(replication)).at(-1);
  if (!latest) throw new RefugeError('not_found', `replication ${replication} has no points in ${s.backend.location}`);
  return latest;
}

/**
 * Progress of long work: redrawn on a terminal at every whole percent, printed every 10% in logs; none with --json,
 * whose output must stay one JSON document. `update` takes the fraction done and the text to show.
 */
function progressLine(cmd: Command): { update(fraction: number, text: () => string): void; done(): void } {
  if (globals(cmd).json) return { update: () => undefined, done: () => undefined };
  const line = new ProgressLine();
  const steps = process.stdout.isTTY ? 100 : 10;
  let shown = -1;
  return {
    update(fraction, text) {
      const step = Math.floor(fraction * steps);
      if (step === shown) return;
      shown = step;
      line.update(text());
    },
    done: () => line.done(),
  };
}

const timed = async <T>(work: () => Promise<T>): Promise<[T, number]> => {
  const started = Date.now();
  const result = await work();
  return [result, (Date.now() - started) / 1000];
};

export function registerStoreCommands(program: Command): void {
  const store = program.command('store').description('create, inspect, verify, prune and restore from a replica store directly');
  const sub = (name: string, description: string) => addStoreOptions(store.command(name).description(description));

  sub('init', 'create a replica store')
    .option('--chunk-size <bytes>', 'chunk size, a power of two from 4096 to 64 MiB', (v) => Number(v))
    .option('--pack-size <bytes>', 'target pack size', (v) => Number(v))
    .option('--compression-level <n>', 'zstd level (0: none)', (v) => Number(v))
    .option('--encrypt', 'encrypt everything with AES-256-GCM under the vault key given by --key-file')
    .option('--format <n>', 'store format: 4 (blobs named by 16 KiB leaf digests, stored by leaf, patched chunks as deltas on their bases; the default, docs/store-format.md), 3 (the same without deltas) or 2 (named by SHA-256, stored whole)', (v) => Number(v))
    .action(async (o: StoreOptions & { chunkSize?: number; packSize?: number; compressionLevel?: number; encrypt?: boolean; format?: number }, cmd: Command) => {
      if (o.encrypt && !o.keyFile) throw new RefugeError('invalid_argument', '--encrypt needs --key-file');
      if (o.format !== undefined && !(STORE_FORMATS as readonly number[]).includes(o.format)) {
        throw new RefugeError('invalid_argument', `--format ${String(o.format)} is not a store format this Refuge writes`, { hint: `use ${STORE_FORMATS.join(' or ')}` });
      }
      const format = o.format as StoreFormat | undefined;
      const s = await openStoreFromOptions(o, { create: true, encrypt: o.encrypt === true, ...(format ? { format } : {}), ...(o.chunkSize ? { chunkSize: o.chunkSize } : {}), ...(o.packSize ? { packSize: o.packSize } : {}), ...(o.compressionLevel !== undefined ? { compressionLevel: o.compressionLevel } : {}) });
      const view = { location: s.backend.location, format: s.config.format, chunkSize: s.chunkSize, packSize: s.config.packSize, compressionLevel: s.config.compressionLevel, encrypted: s.config.encryption !== null };
      if (globals(cmd).json) printJson(view);
      else printFields(view);
    });

  sub('points', 'list the replications in a store, or the points of one')
    .option('--replication <id>', 'replication id')
    .action(async (o: StoreOptions & { replication?: string }, cmd: Command) => {
      const s = await openStoreFromOptions(o);
      if (!o.replication) {
        const rows = await Promise.all((await s.listReplications()).map(async (id) => ({ replication: id, points: (await s.listPointIds(id)).length })));
        if (globals(cmd).json) printJson({ items: rows });
        else printTable(rows, ['replication', 'points']);
        return;
      }
      const replication = o.replication;
      const points = await Promise.all((await s.listPointIds(replication)).map((id) => s.getPoint(replication, id)));
      const rows = points.map((p) => ({ id: p.id, capturedAt: p.capturedAt, consistency: p.consistency, disks: p.disks.map((d) => d.name), changed: formatBytes(p.stats.changedBytes), stored: formatBytes(p.stats.storedBytes) }));
      if (globals(cmd).json) printJson({ items: rows });
      else printTable(rows, ['id', 'capturedAt', 'consistency', 'disks', 'changed', 'stored']);
    });

  sub('restore', 'write a disk of a point to a sparse raw image, checking every chunk')
    .requiredOption('--replication <id>', 'replication id')
    .requiredOption('--point <id>', "point id, or 'latest'")
    .requiredOption('--disk <name>', 'disk name')
    .requiredOption('--out <file>', 'raw image to write (sparse)')
    .option('--no-sync', 'do not flush the image to stable storage at the end')
    .action(async (o: StoreOptions & { replication: string; point: string; disk: string; out: string; sync: boolean }, cmd: Command) => {
      const s = await openStoreFromOptions(o);
      const id = await pointId(s, o.replication, o.point);
      const point = await s.getPoint(o.replication, id);
      const line = progressLine(cmd);
      const [r, seconds] = await timed(() => s.materialize(point, o.disk, resolve(o.out), { sync: o.sync, onProgress: (d, t) => line.update(d / t, () => `  restore ${bytesProgress(d, t)}`) }));
      line.done();
      const result = { point: id, disk: o.disk, out: resolve(o.out), sizeBytes: r.sizeBytes, writtenBytes: r.writtenBytes, seconds };
      if (globals(cmd).json) printJson(result);
      else say(`restored ${o.disk} of ${id} to ${result.out}: ${formatBytes(r.sizeBytes)} (${formatBytes(r.writtenBytes)} data) in ${formatSeconds(seconds)}`);
    });

  sub('import', 'commit a point from raw disk images (offline seeding); stores only chunks changed since the parent')
    .requiredOption('--replication <id>', 'replication id')
    .requiredOption('--disk <name=image...>', 'a disk and its raw image, e.g. disk0=/var/lib/vms/web.raw')
    .option('--parent <id>', "parent point: an id, 'latest' or 'none'", 'latest')
    .option('--consistency <kind>', 'crash or app', 'crash')
    .action(async (o: StoreOptions & { replication: string; disk: string[]; parent: string; consistency: string }, cmd: Command) => {
      if (o.consistency !== 'crash' && o.consistency !== 'app') throw new RefugeError('invalid_argument', `consistency is crash or app, not '${o.consistency}'`);
      const disks = o.disk.map((d) => {
        const eq = d.indexOf('=');
        if (eq <= 0) throw new RefugeError('invalid_argument', `--disk takes name=image, not '${d}'`);
        return { name: d.slice(0, eq), path: resolve(d.slice(eq + 1)) };
      });
      const s = await openStoreFromOptions(o);
      const line = progressLine(cmd);
      const [p, seconds] = await timed(() => importImages(s, { replicationId: o.replication, disks, parent: o.parent === 'none' ? null : o.parent, consistency: o.consistency as 'crash' | 'app', onProgress: (d, t) => line.update(d / t, () => `  import ${bytesProgress(d, t)}`) }));
      line.done();
      await s.close();
      const result = { point: p.id, parentId: p.parentId, changedBytes: p.stats.changedBytes, storedBytes: p.stats.storedBytes, seconds };
      if (globals(cmd).json) printJson(result);
      else say(`committed ${p.id}: ${formatBytes(p.stats.changedBytes)} changed of ${formatBytes(p.stats.storedBytes)} in ${formatSeconds(seconds)}`);
    });

  sub('diff', 'show where two points differ, as byte ranges per disk')
    .requiredOption('--replication <id>', 'replication id')
    .requiredOption('--from <id>', 'the older point')
    .option('--to <id>', "the newer point, or 'latest'", 'latest')
    .action(async (o: StoreOptions & { replication: string; from: string; to: string }, cmd: Command) => {
      const s = await openStoreFromOptions(o);
      const [a, b] = await Promise.all([s.getPoint(o.replication, await pointId(s, o.replication, o.from)), s.getPoint(o.replication, await pointId(s, o.replication, o.to))]);
      const disks = await s.diffPoints(a, b);
      if (globals(cmd).json) printJson({ from: a.id, to: b.id, disks });
      else printTable(disks.flatMap((d) => d.ranges.map((r) => ({ disk: d.disk, offset: r.offset, length: r.length, bytes: formatBytes(r.length) }))), ['disk', 'offset', 'length', 'bytes']);
    });

  sub('verify', 'check every object (or a sample of packs): hashes, structure, and that every point is complete')
    .option('--sample <fraction>', 'check only this fraction of packs (e.g. 0.1); trees and points are always checked', (v) => Number(v))
    .action(async (o: StoreOptions & { sample?: number }, cmd: Command) => {
      const s = await openStoreFromOptions(o);
      const line = progressLine(cmd);
      const r = await verifyStore(s, { ...(o.sample !== undefined ? { sample: o.sample } : {}), onProgress: (d, t) => line.update(d / t, () => `  verify ${bar(t > 0 ? d / t : 1)} ${d}/${t} packs`) });
      line.done();
      if (globals(cmd).json) printJson(r);
      else if (r.problems.length === 0) say(`verified ${r.points} point(s), ${r.packsChecked} of ${r.packs} pack(s), ${r.blobsChecked} blob(s): no problems`);
      else printTable(r.problems.map((p) => ({ object: p.object, points: p.points ?? [], problem: p.problem })), ['object', 'points', 'problem']);
      if (r.problems.length > 0) process.exitCode = 3;
    });

  sub('repair', 'after damage found by verify: keep what is intact, drop damaged chunks and have the sources send them again')
    .action(async (o: StoreOptions, cmd: Command) => {
      const s = await openStoreFromOptions(o);
      const r = await repairStore(s);
      await s.close();
      if (globals(cmd).json) return printJson(r);
      if (r.found.length === 0) return say('repair: verify found no damage; nothing to do');
      say(`repair: ${r.packsRewritten} damaged pack(s) replaced, ${r.blobsKept} intact blob(s) kept, ${r.lost.length} lost blob(s) now missing`);
      if (r.resyncRequested.length > 0) say(`  resync requested for ${r.resyncRequested.join(', ')}: their agents send the lost chunks again at their next point`);
      const unrepaired = r.found.filter((p) => !p.object.startsWith('packs/'));
      if (unrepaired.length > 0) printTable(unrepaired.map((p) => ({ object: p.object, problem: p.problem })), ['object', 'problem']);
    });

  sub('prune', "delete points a retention policy no longer keeps (Azure Site Recovery's schedule, cut at --retention)")
    .requiredOption('--replication <id>', 'replication id')
    .option('--retention <duration>', 'keep points up to this old (ASR: 1d default, 15d at most)', '1d')
    .option('--dry-run', 'only show what would be pruned')
    .action(async (o: StoreOptions & { replication: string; retention: string; dryRun?: boolean }, cmd: Command) => {
      const s = await openStoreFromOptions(o);
      const r = await prunePoints(s, o.replication, asrRetention(parseDuration(o.retention) * 1000), { dryRun: o.dryRun === true });
      if (globals(cmd).json) printJson(r);
      else say(`${o.dryRun ? 'would prune' : 'pruned'} ${r.pruned.length} point(s), kept ${r.kept.length}${r.pruned.length > 0 ? `; run \`refuge store gc\` to free their space` : ''}`);
    });

  sub('gc', 'delete data no point references, rewriting packs that are mostly garbage')
    .option('--grace <duration>', 'keep unreferenced data younger than this (uploads about to be committed)', '1h')
    .option('--dry-run', 'only count what would be deleted')
    .action(async (o: StoreOptions & { grace: string; dryRun?: boolean }, cmd: Command) => {
      const s = await openStoreFromOptions(o);
      const line = progressLine(cmd);
      const [r, seconds] = await timed(() => collectGarbage(s, { graceMs: parseDuration(o.grace) * 1000, dryRun: o.dryRun === true, onProgress: (phase, d, t) => line.update(d / t, () => `  gc ${phase} ${bar(t > 0 ? d / t : 1)} ${d}/${t} packs`) }));
      line.done();
      await s.close();
      if (globals(cmd).json) printJson({ ...r, seconds });
      else say(`gc: ${r.points} point(s), ${r.packsDeleted} pack(s) deleted, ${r.packsWritten} written; ${formatBytes(r.bytesBefore)} -> ${formatBytes(r.bytesAfter)} in ${formatSeconds(seconds)}${r.damaged.length > 0 ? `; ${r.damaged.length} damaged blob(s) left in place: run verify` : ''}`);
    });

  sub('stats', 'sizes, counts, compression and deduplication of a store')
    .action(async (o: StoreOptions, cmd: Command) => {
      const st = await storeStats(await openStoreFromOptions(o));
      if (globals(cmd).json) return printJson(st);
      printFields({
        location: st.location,
        chunkSize: formatBytes(st.chunkSize),
        encrypted: st.encrypted,
        replications: st.replications.map((r) => `${r.id} (${r.points} points)`).join(', ') || '-',
        objects: `${st.packs} packs, ${st.indexFiles} index files`,
        blobs: `${st.dataBlobs} chunks, ${st.treeBlobs} tree nodes`,
        stored: formatBytes(st.storedBytes),
        compression: st.storedBytes > 0 ? `${(st.rawBytes / st.storedBytes).toFixed(2)}x` : '-',
        deduplication: st.rawBytes > 0 ? `${(st.logicalBytes / st.rawBytes).toFixed(2)}x (${formatBytes(st.logicalBytes)} in all points)` : '-',
      });
    });
}

