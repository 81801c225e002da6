import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRefugeError } from '../../src/core/errors.js';
import type { FabricProvider, MachineSpec } from '../../src/fabric/provider.js';

export interface FabricUnderTest {
  provider: FabricProvider;
  /** A second provider on the same site, as a restarted vault process would create it. */
  reopen(): FabricProvider;
  /** How the machine boots; disk boot for providers that do not boot anything. */
  boot: MachineSpec['boot'];
  /** Waits until the machine's guest (if any) has started, e.g. by reading its console. */
  guestStarted(provider: FabricProvider, name: string): Promise<void>;
  cleanup(): Promise<void>;
}

/** The contract of src/fabric/provider.ts, run against every provider (and against the unit tests' fake). */
export function describeFabricContract(name: string, create: (dir: string) => Promise<FabricUnderTest>): void {
  describe(`fabric provider contract: ${name}`, () => {
    let dir: string;
    let f: FabricUnderTest;
    let disk: string;
    const spec = (n: string): MachineSpec => ({ name: n, cpus: 1, memoryMiB: 192, disks: [{ path: disk, format: 'raw' }], boot: f.boot });

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'refuge-fabric-'));
      f = await create(dir);
      disk = join(dir, 'disk0.raw');
      await writeFile(disk, '');
      await truncate(disk, 32 * 1024 * 1024);
    });
    afterAll(async () => {
      await f.cleanup();
      await rm(dir, { recursive: true, force: true });
    });

    it('reports an unknown machine as absent', async () => {
      expect((await f.provider.status('never-started')).state).toBe('absent');
    });

    it('starts a machine, which then runs, and refuses to start it twice', async () => {
      const s = await f.provider.start(spec('m1'));
      expect(['running', 'starting']).toContain(s.state);
      await f.guestStarted(f.provider, 'm1');
      expect((await f.provider.status('m1')).state).toBe('running');
      await expect(f.provider.start(spec('m1'))).rejects.toSatisfy((e: unknown) => isRefugeError(e, 'already_exists'));
    });

    it('keeps the machine when the provider is re-created (a vault restart)', async () => {
      const again = f.reopen();
      expect((await again.status('m1')).state).toBe('running');
      expect(typeof (await again.console('m1'))).toBe('string');
    });

    it('stops idempotently, and deletes without touching the disks it was given', async () => {
      const before = await readFile(disk);
      await f.provider.stop('m1');
      expect((await f.provider.status('m1')).state).toBe('stopped');
      await f.provider.stop('m1');
      await f.provider.stop('never-started');
      await f.provider.delete('m1');
      expect((await f.provider.status('m1')).state).toBe('absent');
      const after = await readFile(disk);
      expect(after.length).toBe(before.length);
    });
  });
}
