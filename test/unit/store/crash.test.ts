import { spawn } from 'node:child_process';
import { cp, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FilesystemBackend } from '../../../src/store/backends/filesystem.js';
import { collectGarbage } from '../../../src/store/gc.js';
import type { PointManifest } from '../../../src/store/manifest.js';
import { ReplicaStore } from '../../../src/store/replica-store.js';
import { verifyStore } from '../../../src/store/verify.js';
import { CRASH_REP, crashDisk, crashPointIndex, crashPointTime } from './crash-scenario.js';
import { commitDisk, expectSameBytes, makeTempDir, type TempDir } from './fixtures.js';

/**
 * kill -9 during commit, prune and garbage collection: a child process (crash-child.ts) works on a copy of a store
 * and SIGKILLs itself before or during its n-th write or delete, for every n. After each crash the store must open,
 * verify clean, list only whole points, restore each to its exact bytes, and accept a new commit and a gc.
 */

const CHILD = join(import.meta.dirname, 'crash-child.ts');

function runChild(dir: string, mode: string, crashAt: number, how: 'before' | 'during'): Promise<{ signal: NodeJS.Signals | null; code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dir, mode, String(crashAt), how], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.once('error', reject);
    child.once('exit', (code, signal) => resolve({ code, signal, out }));
  });
}

let tmp: TempDir;
let base: string;
const BASE_POINTS = 6;

beforeAll(async () => {
  tmp = await makeTempDir('refuge-crash-');
  base = join(tmp.path, 'base');
  const store = await ReplicaStore.open(await FilesystemBackend.create(base), { create: true, chunkSize: 4096, packSize: 48 * 1024 });
  let parent: PointManifest | null = null;
  for (let k = 0; k < BASE_POINTS; k++) {
    parent = (await commitDisk(store, crashDisk(k), { replicationId: CRASH_REP, parent, capturedAt: crashPointTime(k) })).point;
  }
  await store.close();
});
afterAll(async () => {
  await tmp.cleanup();
});

async function expectSoundAfterCrash(dir: string, label: string): Promise<number> {
  const store = await ReplicaStore.open(new FilesystemBackend(dir));
  expect((await verifyStore(store)).problems, label).toEqual([]);
  const ids = await store.listPointIds(CRASH_REP);
  for (const id of ids) {
    const point = await store.getPoint(CRASH_REP, id);
    const k = crashPointIndex(point.capturedAt);
    const out = join(dir, '..', `${id}.img`);
    await store.materialize(point, 'disk0', out);
    expectSameBytes(await readFile(out), crashDisk(k), `${label}: point ${k}`);
  }
  // The store goes on working: a new commit on the latest point, and a garbage collection.
  const latest = await store.getPoint(CRASH_REP, ids.at(-1) as string);
  const k = Math.max(...(await Promise.all(ids.map(async (id) => crashPointIndex((await store.getPoint(CRASH_REP, id)).capturedAt))))) + 1;
  await commitDisk(store, crashDisk(k), { replicationId: CRASH_REP, parent: latest, capturedAt: crashPointTime(k) });
  await collectGarbage(store, { graceMs: 0 });
  expect((await verifyStore(store)).problems, `${label}: after recovery`).toEqual([]);
  await store.close();
  return ids.length;
}

describe.each(['commit', 'prune', 'gc'])('kill -9 during %s', (mode) => {
  it('leaves a store that opens, verifies clean and restores every point it lists', { timeout: 180_000 }, async () => {
    const dry = join(tmp.path, `${mode}-dry`, 'store');
    await cp(base, dry, { recursive: true });
    const clean = await runChild(dry, mode, 0, 'before');
    expect(clean.code, clean.out).toBe(0);
    const total = Number(/ops (\d+)/.exec(clean.out)?.[1]);
    expect(total).toBeGreaterThan(1);
    // Every operation for the short runs; for long ones an even spread, always including the first and the last.
    const steps = total <= 12 ? Array.from({ length: total }, (_, i) => i + 1) : Array.from({ length: 12 }, (_, i) => 1 + Math.round((i * (total - 1)) / 11));
    for (const [n, step] of steps.entries()) {
      const how = n % 2 === 0 ? 'during' : 'before';
      const dir = join(tmp.path, `${mode}-${step}-${how}`, 'store');
      await cp(base, dir, { recursive: true });
      const run = await runChild(dir, mode, step, how);
      expect(run.signal, `${mode} step ${step}: ${run.out}`).toBe('SIGKILL');
      const points = await expectSoundAfterCrash(dir, `${mode} killed ${how} operation ${step} of ${total}`);
      if (mode === 'commit') expect([BASE_POINTS, BASE_POINTS + 1]).toContain(points);
    }
  });
});
