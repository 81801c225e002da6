import { readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { writeFileAtomic } from '../../core/atomic-file.js';
import { RefugeError } from '../../core/errors.js';
import { sleep } from '../../core/durations.js';
import type { Hydration, HydrationState, HydrationStatus, MachineSpec } from '../provider.js';
import { node, overlayPath } from './instant-disks.js';
import { QmpClient } from './qmp.js';

/** qemu's answer to query-jobs (the block-job fields come from query-block-jobs). */
interface QmpJob {
  id: string;
  type: string;
  status: 'created' | 'running' | 'paused' | 'ready' | 'standby' | 'waiting' | 'pending' | 'aborting' | 'concluded' | 'null';
  'current-progress': number;
  'total-progress': number;
  error?: string;
}

/**
 * Hydration of a qemu machine's instant disks (graph and rationale in instant-disks.ts): blockdev-mirror of each
 * overlay onto the local raw file, then job-complete to pivot. Mirror, not blockdev-stream: streaming would leave
 * the disk a qcow2 overlay (the local result would not be the plain raw image every other path produces, and a
 * later re-protect reads), and it copies only the backing's bytes, while mirror also moves the guest's writes that
 * landed in the overlay and ends on the raw file with one atomic switch. Jobs are created with auto-dismiss off, so
 * a failed copy stays visible with its error until this class reads it. Disks switched over are recorded in
 * `hydration.json` beside the machine, since qemu forgets a job once it is dismissed.
 */
export class QemuHydration implements Hydration {
  constructor(private readonly dirOf: (name: string) => string) {}

  async start(name: string, options: { bytesPerSecond?: number } = {}): Promise<HydrationStatus> {
    const { spec, done } = await this.load(name);
    await this.withQmp(name, async (qmp) => {
      const jobs = await qmp.execute<QmpJob[]>('query-jobs');
      const nodes = new Set((await qmp.execute<{ 'node-name': string }[]>('query-named-block-nodes', { flat: true })).map((n) => n['node-name']));
      for (const [i, disk] of spec.disks.entries()) {
        if (!disk.instant || done.includes(i)) continue;
        const existing = jobs.find((j) => j.id === node.job(i));
        if (existing?.status === 'concluded' && existing.error) await qmp.execute('job-dismiss', { id: node.job(i) }); // a failed copy: start over
        else if (existing) continue;
        if (!nodes.has(node.targetFile(i))) {
          await qmp.execute('blockdev-add', { driver: 'file', 'node-name': node.targetFile(i), filename: resolve(disk.path), discard: 'unmap' });
        }
        if (!nodes.has(node.target(i))) {
          // Zeros read from the point become holes in the local file instead of written zeros.
          await qmp.execute('blockdev-add', { driver: 'raw', 'node-name': node.target(i), file: node.targetFile(i), discard: 'unmap', 'detect-zeroes': 'unmap' });
        }
        await qmp.execute('blockdev-mirror', {
          'job-id': node.job(i),
          device: node.overlay(i),
          target: node.target(i),
          sync: 'full',
          speed: options.bytesPerSecond ?? 0,
          // qemu copies a whole buffer (16 MiB by default) before its rate limit applies: with a limit, a buffer of
          // about one second's worth keeps the copy smooth instead of a burst of 16 MiB per pause.
          ...(options.bytesPerSecond ? { 'buf-size': Math.min(16 << 20, Math.max(256 << 10, 2 ** Math.ceil(Math.log2(options.bytesPerSecond)))) } : {}),
          'auto-dismiss': false,
        });
      }
    });
    return this.status(name);
  }

  async setSpeed(name: string, bytesPerSecond: number): Promise<void> {
    const { spec } = await this.load(name);
    await this.withQmp(name, async (qmp) => {
      const jobs = await qmp.execute<QmpJob[]>('query-jobs');
      for (const i of spec.disks.keys()) {
        const job = jobs.find((j) => j.id === node.job(i));
        if (job && (job.status === 'running' || job.status === 'ready')) await qmp.execute('block-job-set-speed', { device: node.job(i), speed: bytesPerSecond });
      }
    });
  }

  async status(name: string): Promise<HydrationStatus> {
    const { spec, done } = await this.load(name);
    const jobs = spec.disks.some((d, i) => d.instant && !done.includes(i)) ? await this.withQmp(name, (qmp) => qmp.execute<QmpJob[]>('query-jobs')) : [];
    const disks = spec.disks.flatMap((disk, i): HydrationStatus['disks'] => {
      if (!disk.instant) return [];
      const size = disk.instant.sizeBytes;
      if (done.includes(i)) return [{ path: disk.path, state: 'done', doneBytes: size, totalBytes: size }];
      const job = jobs.find((j) => j.id === node.job(i));
      if (!job) return [{ path: disk.path, state: 'none', doneBytes: 0, totalBytes: size }];
      const state: HydrationState = job.error ? 'failed' : job.status === 'ready' ? 'ready' : job.status === 'concluded' ? 'ready' : 'hydrating';
      return [{ path: disk.path, state, doneBytes: job['current-progress'], totalBytes: Math.max(job['total-progress'], 1), ...(job.error ? { error: job.error } : {}) }];
    });
    return summarize(disks);
  }

  async complete(name: string): Promise<HydrationStatus> {
    const { spec, done } = await this.load(name);
    const before = await this.status(name);
    const notReady = before.disks.filter((d) => d.state !== 'ready' && d.state !== 'done');
    if (notReady.length > 0) {
      throw new RefugeError('failed_precondition', `machine '${name}' cannot switch to its local disks yet: ${notReady.map((d) => `${d.path} is ${d.state}${d.error ? ` (${d.error})` : ''}`).join(', ')}`);
    }
    await this.withQmp(name, async (qmp) => {
      for (const [i, disk] of spec.disks.entries()) {
        if (!disk.instant || done.includes(i)) continue;
        let job = (await qmp.execute<QmpJob[]>('query-jobs')).find((j) => j.id === node.job(i));
        if (job?.status === 'ready') await qmp.execute('job-complete', { id: node.job(i) });
        for (;;) {
          job = (await qmp.execute<QmpJob[]>('query-jobs')).find((j) => j.id === node.job(i));
          if (!job || job.status === 'concluded') break;
          await sleep(100);
        }
        if (job?.error) throw new RefugeError('unavailable', `switching machine '${name}' disk ${i} to ${disk.path} failed: ${job.error}`);
        // The pivot happened: remember it before the job (qemu's record of it) is dismissed.
        done.push(i);
        await writeFileAtomic(join(this.dirOf(name), 'hydration.json'), JSON.stringify({ done }));
        if (job) await qmp.execute('job-dismiss', { id: node.job(i) });
        // The overlay and the point are no longer in the guest's path: let go of them (closes the NBD connection).
        for (const n of [node.overlay(i), node.overlayFile(i), node.point(i)]) await qmp.execute('blockdev-del', { 'node-name': n }).catch(() => undefined);
        await rm(overlayPath(this.dirOf(name), i), { force: true });
      }
    });
    return this.status(name);
  }

  private async load(name: string): Promise<{ spec: MachineSpec; done: number[] }> {
    const dir = this.dirOf(name);
    const text = await readFile(join(dir, 'machine.json'), 'utf8').catch(() => '');
    if (!text) throw new RefugeError('not_found', `machine '${name}' is not known at this site`);
    const spec = (JSON.parse(text) as { spec: MachineSpec }).spec;
    const h = await readFile(join(dir, 'hydration.json'), 'utf8').catch(() => '');
    return { spec, done: h ? (JSON.parse(h) as { done: number[] }).done : [] };
  }

  private async withQmp<T>(name: string, f: (qmp: QmpClient) => Promise<T>): Promise<T> {
    const qmp = await QmpClient.connect(join(this.dirOf(name), 'qmp.sock'));
    try {
      return await f(qmp);
    } finally {
      qmp.close();
    }
  }
}

function summarize(disks: HydrationStatus['disks']): HydrationStatus {
  const states = disks.map((d) => d.state);
  const state: HydrationState =
    disks.length === 0 ? 'none'
    : states.includes('failed') ? 'failed'
    : states.every((s) => s === 'done') ? 'done'
    : states.every((s) => s === 'done' || s === 'ready') ? 'ready'
    : states.every((s) => s === 'none') ? 'none'
    : 'hydrating';
  return { state, doneBytes: disks.reduce((n, d) => n + d.doneBytes, 0), totalBytes: disks.reduce((n, d) => n + d.totalBytes, 0), disks };
}
