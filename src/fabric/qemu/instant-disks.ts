import { open, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { RefugeError } from '../../core/errors.js';
import { run } from '../../core/processes.js';
import type { MachineDisk } from '../provider.js';

/**
 * qemu block graph of a machine started on instant disks (disk i):
 *
 *   virtio-blk vd<i> ── ov<i> (qcow2 overlay, local file ov<i>f: every guest write lands here)
 *                          └─ backing: pt<i> (nbd, read-only: the recovery point served from the replica store)
 *
 * Hydration (hydration.ts) adds hy<i> (raw, on the disk's local `path`) and runs blockdev-mirror ov<i> -> hy<i>
 * with sync=full: the point's bytes and the guest's writes since start are copied while the guest keeps running,
 * and writes during the copy are mirrored. When the job is ready, job-complete pivots vd<i> onto hy<i> atomically
 * (no restart), and ov<i>, ov<i>f and pt<i> are deleted, closing the NBD connection.
 *
 * The NBD client gets reconnect-delay: if the vault process serving the point goes away (restart) or the socket
 * drops, qemu holds the guest's reads for up to a minute while reconnecting instead of failing them; reads the
 * server cannot answer because the store is unreachable are held on the server side (PointBlockDevice retries).
 */
export const node = {
  point: (i: number) => `pt${i}`,
  overlayFile: (i: number) => `ov${i}f`,
  overlay: (i: number) => `ov${i}`,
  targetFile: (i: number) => `hy${i}f`,
  target: (i: number) => `hy${i}`,
  device: (i: number) => `vd${i}`,
  job: (i: number) => `hydrate${i}`,
};

export const overlayPath = (dir: string, i: number): string => join(dir, `overlay${i}.qcow2`);

const NBD_URI = /^nbd\+unix:\/\/\/([^?]*)\?socket=(.+)$/;

/** Prepares an instant disk's files: a fresh qcow2 overlay and a fresh sparse local target of the disk's size. */
export async function prepareInstantDisk(dir: string, i: number, disk: MachineDisk, qemuImg = 'qemu-img'): Promise<void> {
  const instant = disk.instant;
  if (!instant) return;
  if (!NBD_URI.test(instant.nbd)) throw new RefugeError('invalid_argument', `instant disk ${i}: '${instant.nbd}' is not an nbd+unix:///EXPORT?socket=PATH URI`);
  if (!Number.isSafeInteger(instant.sizeBytes) || instant.sizeBytes <= 0) throw new RefugeError('invalid_argument', `instant disk ${i}: size ${instant.sizeBytes} is not a positive byte count`);
  const overlay = overlayPath(dir, i);
  await rm(overlay, { force: true });
  const r = await run(qemuImg, ['create', '-q', '-f', 'qcow2', overlay, String(instant.sizeBytes)], { timeoutMs: 30_000 });
  if (r.code !== 0) throw new RefugeError('failed_precondition', `qemu-img could not create the overlay ${overlay}: ${r.stderr.trim()}`);
  // A new, empty (sparse) target: hydration writes every byte; a leftover from an earlier attempt must not survive.
  const f = await open(resolve(disk.path), 'w');
  try {
    await f.truncate(instant.sizeBytes);
  } finally {
    await f.close();
  }
}

/** qemu arguments for the disks when any is instant: every disk as -blockdev nodes and a virtio-blk -device, in order. */
export function blockdevArgs(dir: string, disks: MachineDisk[]): string[] {
  const esc = (v: string) => v.replaceAll(',', ',,');
  const args: string[] = [];
  for (const [i, disk] of disks.entries()) {
    let top: string;
    if (disk.instant) {
      const m = NBD_URI.exec(disk.instant.nbd) as RegExpExecArray;
      args.push('-blockdev', [
        'driver=nbd', `node-name=${node.point(i)}`, 'server.type=unix', `server.path=${esc(m[2] ?? '')}`, `export=${esc(m[1] ?? '')}`,
        'reconnect-delay=60', 'read-only=on',
      ].join(','));
      args.push('-blockdev', `driver=file,node-name=${node.overlayFile(i)},filename=${esc(overlayPath(dir, i))}`);
      args.push('-blockdev', `driver=qcow2,node-name=${node.overlay(i)},file=${node.overlayFile(i)},backing=${node.point(i)}`);
      top = node.overlay(i);
    } else {
      args.push('-blockdev', `driver=file,node-name=${node.targetFile(i)},filename=${esc(resolve(disk.path))}`);
      args.push('-blockdev', `driver=raw,node-name=${node.target(i)},file=${node.targetFile(i)}`);
      top = node.target(i);
    }
    args.push('-device', `virtio-blk-pci,drive=${top},id=${node.device(i)}`);
  }
  return args;
}
