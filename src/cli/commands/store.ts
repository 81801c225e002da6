import { resolve } from 'node:path';
import type { Command } from 'commander';
import { RefugeError } from '../../core/errors.js';
import { formatBytes, formatSeconds } from '../../core/durations.js';
import { FilesystemBackend } from '../../store/backends/filesystem.js';
import { ReplicaStore } from '../../store/replica-store.js';
import { globals } from '../context.js';
import { printJson, printTable, say } from '../output.js';
import { ProgressLine, bytesProgress } from '../progress.js';

async function openStore(path: string): Promise<ReplicaStore> {
  return ReplicaStore.open(new FilesystemBackend(resolve(path)));
}

/** `refuge store ...`: work on a replica store directly, without a vault (e.g. at a recovery site on its own). */
export function registerStoreCommands(program: Command): void {
  const store = program.command('store').description('inspect and restore from a replica store directly');
  store.command('points')
    .requiredOption('--path <dir>', 'the store folder')
    .requiredOption('--replication <id>', 'replication id')
    .description('list the points of a replication')
    .action(async (o: { path: string; replication: string }, cmd: Command) => {
      const s = await openStore(o.path);
      const points = await Promise.all((await s.listPointIds(o.replication)).map((id) => s.getPoint(o.replication, id)));
      const rows = points.map((p) => ({ id: p.id, capturedAt: p.capturedAt, consistency: p.consistency, disks: p.disks.map((d) => d.name), changed: formatBytes(p.stats.changedBytes) }));
      if (globals(cmd).json) printJson({ items: rows });
      else printTable(rows, ['id', 'capturedAt', 'consistency', 'disks', 'changed']);
    });
  store.command('restore')
    .requiredOption('--path <dir>', 'the store folder')
    .requiredOption('--replication <id>', 'replication id')
    .requiredOption('--point <id>', "point id, or 'latest'")
    .requiredOption('--disk <name>', 'disk name')
    .requiredOption('--out <file>', 'raw image to write (sparse)')
    .description('write a disk of a point to a raw image, checking every chunk')
    .action(async (o: { path: string; replication: string; point: string; disk: string; out: string }, cmd: Command) => {
      const s = await openStore(o.path);
      const id = o.point === 'latest' ? (await s.listPointIds(o.replication)).at(-1) : o.point;
      if (!id) throw new RefugeError('not_found', `replication ${o.replication} has no points in ${o.path}`);
      const point = await s.getPoint(o.replication, id);
      const line = new ProgressLine();
      const started = Date.now();
      const r = await s.materialize(point, o.disk, resolve(o.out), { onProgress: (d, t) => line.update(`  restore ${bytesProgress(d, t)}`) });
      line.done();
      const result = { point: id, disk: o.disk, out: resolve(o.out), sizeBytes: r.sizeBytes, writtenBytes: r.writtenBytes, seconds: (Date.now() - started) / 1000 };
      if (globals(cmd).json) printJson(result);
      else say(`restored ${o.disk} of ${id} to ${result.out}: ${formatBytes(r.sizeBytes)} (${formatBytes(r.writtenBytes)} data) in ${formatSeconds(result.seconds)}`);
    });
  store.command('verify')
    .requiredOption('--path <dir>', 'the store folder')
    .requiredOption('--replication <id>', 'replication id')
    .description('read and hash-check every chunk of every point of a replication')
    .action(async (o: { path: string; replication: string }, cmd: Command) => {
      const s = await openStore(o.path);
      const problems: { point: string; object: string; problem: string }[] = [];
      const ids = await s.listPointIds(o.replication);
      for (const id of ids) {
        try {
          for (const p of await s.verifyPoint(await s.getPoint(o.replication, id))) problems.push({ point: id, ...p });
        } catch (err) {
          problems.push({ point: id, object: `points/${o.replication}/${id}.json`, problem: (err as Error).message });
        }
      }
      if (globals(cmd).json) printJson({ points: ids.length, problems });
      else if (problems.length === 0) say(`verified ${ids.length} point(s): no problems`);
      else printTable(problems, ['point', 'object', 'problem']);
      if (problems.length > 0) process.exitCode = 3;
    });
}
