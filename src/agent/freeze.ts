import { access } from 'node:fs/promises';
import { QmpClient } from '../fabric/qemu/qmp.js';

/**
 * A freeze hook makes a scan consistent: nothing writes to the disks between `freeze` and `thaw`, so the chunks
 * read in between form one crash-consistent image. Without a hook a scan of a disk in use is only as consistent
 * as the writes that happened to land during it.
 */
export interface FreezeHook {
  readonly description: string;
  freeze(): Promise<void>;
  thaw(): Promise<void>;
  /**
   * Where to read a disk while frozen: a snapshot hook (hooks/snapshot-hooks.ts) names the snapshot of the disk
   * instead of the disk, so the source is held only for the instant the snapshot takes. Absent: the disk itself.
   */
  readPath?(path: string): string;
}

/**
 * Pauses a qemu VM through its QMP socket (`stop` ... `cont`). The guest sees a pause, not a shutdown: its vCPUs
 * stop, so no write reaches the disk image while the agent reads it. A VM that is not running (no socket) needs no
 * pause. Costs a pause for the duration of the scan; cdp capture over NBD (issue 4) removes it.
 */
export class QmpPauseHook implements FreezeHook {
  private client: QmpClient | undefined;
  private paused = false;

  constructor(private readonly socketPath: string) {}

  get description(): string {
    return `pause the VM through QMP at ${this.socketPath}`;
  }

  async freeze(): Promise<void> {
    if (!(await access(this.socketPath).then(() => true, () => false))) return;
    this.client = await QmpClient.connect(this.socketPath);
    const status = await this.client.execute<{ running: boolean }>('query-status');
    if (status.running) {
      await this.client.execute('stop');
      this.paused = true;
    }
  }

  async thaw(): Promise<void> {
    try {
      if (this.paused) await this.client?.execute('cont');
    } finally {
      this.paused = false;
      this.client?.close();
      this.client = undefined;
    }
  }
}
