import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { RefugeError } from '../../core/errors.js';
import { sleep } from '../../core/durations.js';
import type { FabricProvider, HydrationStatus, MachineDisk } from '../../fabric/provider.js';
import type { PointManifest } from '../../store/manifest.js';
import type { ReplicaStore } from '../../store/replica-store.js';
import type { Site } from '../../vault/model.js';
import type { SiteResources } from '../site-resources.js';

/**
 * How a recovered machine gets its disks:
 * - `instant`: the machine starts at once on the recovery point served from the replica store over NBD (under a
 *   local copy-on-write overlay) and is hydrated onto local raw disks in the background, then switched over
 *   without a restart. Needs a fabric provider with `hydration` (qemu).
 * - `restore-first`: every disk is written out from the point (every chunk hash-checked) before the machine starts.
 * Either way the machine ends on the same local raw files (`<disksDir>/<disk>.raw`).
 */
export const RECOVERY_MODES = ['instant', 'restore-first'] as const;
export type RecoveryMode = (typeof RECOVERY_MODES)[number];

/** The requested mode, or by default instant where the site's fabric can hydrate and restore-first elsewhere. */
export function chooseRecoveryMode(requested: RecoveryMode | undefined, fabric: FabricProvider, site: Site): RecoveryMode {
  if (requested === 'instant' && !fabric.hydration) {
    throw new RefugeError('failed_precondition', `site '${site.name}' runs machines with the ${fabric.kind} fabric provider, which cannot start them instantly`, {
      hint: "request mode 'restore-first', or use the qemu provider at this site",
    });
  }
  return requested ?? (fabric.hydration ? 'instant' : 'restore-first');
}

export const localDiskPath = (disksDir: string, diskName: string): string => join(disksDir, `${diskName}.raw`);

/** Key of a machine's served point in SiteResources' exports (one per recovered machine per site). */
const exportKey = (site: Site, machine: string) => `${site.id}/${machine}`;

export interface DiskPlan {
  mode: RecoveryMode;
  disks: MachineDisk[];
}

/**
 * Makes the point's disks available for starting the machine: restore-first writes them out (progress 0..1 through
 * `onProgress`); instant serves the point (idempotent: a resumed job serves it again in the new process).
 */
export async function provisionDisks(
  sites: SiteResources,
  o: { site: Site; store: ReplicaStore; point: PointManifest; disksDir: string; machine: string; mode: RecoveryMode; signal?: AbortSignal; onProgress?: (fraction: number, message: string) => void },
): Promise<DiskPlan> {
  await mkdir(o.disksDir, { recursive: true });
  if (o.mode === 'restore-first') {
    for (const [i, disk] of o.point.disks.entries()) {
      await o.store.materialize(o.point, disk.name, localDiskPath(o.disksDir, disk.name), {
        ...(o.signal ? { signal: o.signal } : {}),
        onProgress: (done, total) => o.onProgress?.((i + done / Math.max(1, total)) / o.point.disks.length, `restoring ${disk.name}`),
      });
    }
    return { mode: o.mode, disks: o.point.disks.map((d) => ({ path: localDiskPath(o.disksDir, d.name), format: 'raw' })) };
  }
  const served = await sites.instant.serve(exportKey(o.site, o.machine), join(o.disksDir, 'point.sock'), o.store, o.point);
  return {
    mode: o.mode,
    disks: o.point.disks.map((d) => ({ path: localDiskPath(o.disksDir, d.name), format: 'raw', instant: { nbd: served.uri(d.name), sizeBytes: d.sizeBytes } })),
  };
}

/**
 * Hydrates an instantly started machine: starts the copy (or finds it running), reports progress until every disk
 * is in sync, switches the machine onto its local disks and stops serving the point. Idempotent.
 */
export async function hydrateMachine(
  sites: SiteResources,
  o: { site: Site; fabric: FabricProvider; machine: string; bytesPerSecond?: number; signal?: AbortSignal; onProgress?: (status: HydrationStatus) => void | Promise<void> },
): Promise<HydrationStatus> {
  const hydration = o.fabric.hydration;
  if (!hydration) throw new RefugeError('internal', `the ${o.fabric.kind} provider cannot hydrate`);
  let status = await hydration.start(o.machine, { bytesPerSecond: o.bytesPerSecond ?? 0 });
  while (status.state === 'hydrating' || status.state === 'none') {
    await o.onProgress?.(status);
    await sleep(500, o.signal);
    status = await hydration.status(o.machine);
  }
  if (status.state === 'failed') {
    const why = status.disks.filter((d) => d.error).map((d) => `${d.path}: ${d.error}`).join('; ');
    throw new RefugeError('unavailable', `hydrating machine '${o.machine}' failed: ${why}`, { hint: 'the machine keeps running on the served point; retry the job to hydrate again' });
  }
  if (status.state === 'ready') status = await hydration.complete(o.machine);
  await sites.instant.stop(exportKey(o.site, o.machine));
  await o.onProgress?.(status);
  return status;
}

/** Stops serving a machine's point (cleanup of a machine that never finished hydrating). */
export async function stopServing(sites: SiteResources, site: Site, machine: string): Promise<void> {
  await sites.instant.stop(exportKey(site, machine));
}
