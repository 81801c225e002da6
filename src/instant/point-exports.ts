import { NbdServer } from '../nbd/server.js';
import type { Logger } from '../core/log.js';
import type { PointManifest } from '../store/manifest.js';
import type { ReplicaStore } from '../store/replica-store.js';
import { PointBlockDevice, pointDiskNames, type PointDeviceOptions, type PointDeviceStats } from './point-device.js';

/** One served point: an NBD server on a unix socket with one export per disk (export name = disk name). */
export interface ServedPoint {
  key: string;
  socketPath: string;
  pointId: string;
  devices: PointBlockDevice[];
  /** `nbd+unix:///DISK?socket=PATH`, the URI a fabric provider attaches. */
  uri(diskName: string): string;
}

/**
 * The recovery points this vault process serves for instant recovery, keyed by the recovered machine. Serving is
 * idempotent (a resumed job calls it again after a vault restart, and the VM's NBD client reconnects to the new
 * socket), and stopping it is the last step of hydration or cleanup.
 */
export class PointExports {
  private readonly served = new Map<string, Promise<{ point: ServedPoint; server: NbdServer }>>();

  constructor(private readonly o: PointDeviceOptions & { log?: Logger } = {}) {}

  async serve(key: string, socketPath: string, store: ReplicaStore, point: PointManifest): Promise<ServedPoint> {
    let entry = this.served.get(key);
    if (entry) {
      const e = await entry;
      if (e.point.pointId === point.id && e.point.socketPath === socketPath) return e.point;
      await this.stop(key);
    }
    entry = (async () => {
      const devices = pointDiskNames(point).map((name) => new PointBlockDevice(store, point, name, this.o));
      const server = await NbdServer.start({
        listen: { socketPath },
        exports: devices.map((d) => ({ name: d.diskName, description: `point ${point.id} disk ${d.diskName}`, device: d })),
        ...(this.o.log ? { log: this.o.log } : {}),
      });
      const served: ServedPoint = { key, socketPath, pointId: point.id, devices, uri: (disk) => `nbd+unix:///${disk}?socket=${socketPath}` };
      return { point: served, server };
    })();
    this.served.set(key, entry);
    entry.catch(() => this.served.delete(key));
    return (await entry).point;
  }

  /** The served point of `key`, if this process serves it. */
  async get(key: string): Promise<ServedPoint | undefined> {
    return (await this.served.get(key)?.catch(() => undefined))?.point;
  }

  /** Per-disk read statistics of a served point (empty when not served here). */
  async stats(key: string): Promise<Record<string, PointDeviceStats>> {
    const p = await this.get(key);
    return Object.fromEntries((p?.devices ?? []).map((d) => [d.diskName, { ...d.stats }]));
  }

  async stop(key: string): Promise<void> {
    const entry = this.served.get(key);
    if (!entry) return;
    this.served.delete(key);
    const e = await entry.catch(() => undefined);
    if (!e) return;
    for (const d of e.point.devices) d.close();
    await e.server.close();
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.served.keys()].map((k) => this.stop(k)));
  }
}
