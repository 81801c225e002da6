import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { RefugeError } from '../core/errors.js';
import type { BlobNaming } from './chunks.js';
import { deltaBound } from './delta-frame.js';

/**
 * A pool of worker threads, one per core, shared by every store in the process, for the CPU-bound work of
 * blob-worker.ts (every task names blobs as its store does: `naming`). Idle workers do not keep the process alive. Under a TypeScript loader (tests, tsx) the worker
 * runs the .ts source through tsx; built code runs the compiled .js.
 */

export type WorkerTask =
  | { op: 'encode'; key: Uint8Array | null; naming: BlobNaming; level: number; data: Uint8Array; items: { offset: number; length: number; claimedHash?: string }[] }
  | { op: 'scan'; key: Uint8Array | null; naming: BlobNaming; level: number; data: Uint8Array; chunkSize: number; previous: Uint8Array; out?: ArrayBuffer | SharedArrayBuffer }
  | { op: 'hash'; key: null; naming: BlobNaming; data: Uint8Array; chunkSize: number }
  | { op: 'rebuild'; key: Uint8Array | null; naming: BlobNaming; level: number; data: Uint8Array; items: RebuildItem[]; out: ArrayBuffer | SharedArrayBuffer; deltas?: boolean }
  /** `strict`: also check what reads need not (BlobCheck.strict), for verify and for repair and gc before they copy blobs. */
  | { op: 'decode'; key: Uint8Array | null; naming: BlobNaming; data: Uint8Array; items: { offset: number; length: number; flags: number; rawLength: number; hash: string }[]; strict?: boolean }
  | { op: 'restore'; key: Uint8Array | null; naming: BlobNaming; data: Uint8Array; fd: number; items: RestoreItem[] };

/**
 * A blob a restore task decodes, checks and writes at each of `positions`: its stored bytes at `offset` in the task's
 * data, and for a delta (delta-frame.ts) its bases' stored bytes there too, newest first (`chain`).
 */
export interface RestoreItem {
  offset: number;
  length: number;
  flags: number;
  rawLength: number;
  hash: string;
  positions: number[];
  chain?: { offset: number; length: number }[];
}

/**
 * A patch's base: its stored bytes, or where they lie in a local pack file (the worker reads them; a file gone or
 * short answers problem 'unread', and the caller reads the bytes another way).
 */
export type RebuildBase = { flags: number; rawLength: number; hash: string; chain?: ChainMember[] } & ({ data: Uint8Array } | { file: string; offset: number; length: number });

/** A delta base's own bases, newest first, down to a leaf-framed blob (delta-frame.ts): where each lies. */
export interface ChainMember {
  file: string;
  offset: number;
  length: number;
}

/** One patch of a rebuild task: its bytes at `offset` in the task's data, rebuilding `chunkLength` bytes from `base` (null: zeros). */
export interface RebuildItem {
  offset: number;
  length: number;
  chunkLength: number;
  claimedHash: string;
  base: RebuildBase | null;
}

/**
 * What became of one patch: a problem (`base`: the base is damaged; `unread`: its pack file is gone or short, read it
 * another way; `mismatch`: the rebuilt chunk hashes to `hash`, not the claimed one), or the chunk stored, its
 * `storedLength` encoded bytes next in the reply's `stored` (which is the task's `out` when they fit in it).
 */
export type RebuildResult = { problem: 'base' | 'unread' | 'patch' | 'zero' | 'mismatch'; message: string; hash?: string } | { hash: string; flags: number; rawLength: number; storedLength: number; base?: string };

/** The most an encoded (compressed or not, then maybe sealed) chunk of `rawLength` bytes takes: room a rebuild's `out` leaves per chunk. */
export const encodedBound = (rawLength: number): number => deltaBound(rawLength) + 64;

export type WorkerReply =
  | { op: 'encode'; items: ({ hash: string; problem: string } | { hash: string; flags: number; rawLength: number; storedLength: number })[]; stored: ArrayBuffer }
  | { op: 'scan'; hashes: ArrayBuffer; encoded: { index: number; flags: number; rawLength: number; storedLength: number }[]; stored: ArrayBuffer | SharedArrayBuffer; input: ArrayBuffer }
  | { op: 'hash'; hashes: ArrayBuffer; input: ArrayBuffer; digests?: ArrayBuffer }
  /** `stored` and `input` come back when they were moved to the worker (or `stored` did not fit `out`); shared memory stays the caller's. */
  | { op: 'rebuild'; items: RebuildResult[]; stored?: ArrayBuffer; input?: ArrayBuffer }
  | { op: 'decode'; items: ({ problem: string } | { rawLength: number })[]; raw: ArrayBuffer }
  | { op: 'restore'; items: { problem?: string }[]; written: number };

type ReplyOf<Op extends WorkerTask['op']> = Extract<WorkerReply, { op: Op }>;

interface Pending {
  task: WorkerTask;
  transfer: ArrayBuffer[];
  resolve(reply: WorkerReply): void;
  reject(err: unknown): void;
}

class Slot {
  busy: Pending | undefined;
  constructor(readonly worker: Worker) {}
}

function startWorker(): Worker {
  const self = import.meta.url;
  if (self.endsWith('.ts')) {
    const target = new URL('./blob-worker.ts', self).href;
    const boot = `import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(target)}); })`;
    return new Worker(boot, { eval: true });
  }
  return new Worker(new URL('./blob-worker.js', self));
}

/**
 * A copy in memory of its own, allocated by Node rather than V8 (`new Uint8Array(view)`): moving V8-allocated memory
 * to another thread costs time in proportion to its size on the posting thread (measured here: 42 us for 64 KiB,
 * 120 us for 4 MiB, against 4 us for Node's), and the replicator's main thread posts a task per patched chunk.
 */
export function ownCopy(data: Uint8Array): Buffer {
  const out = Buffer.allocUnsafeSlow(data.byteLength);
  out.set(data);
  return out;
}

/** True when `buf` owns its whole ArrayBuffer, so handing the memory to a worker cannot take anyone else's bytes. */
const ownsMemory = (buf: Uint8Array): boolean => buf.byteOffset === 0 && buf.byteLength === buf.buffer.byteLength && buf.buffer instanceof ArrayBuffer;

export class WorkerPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  private nextId = 1;
  private readonly waiting = new Map<number, Pending>();

  constructor(private readonly size = Math.max(1, availableParallelism())) {}

  /**
   * Runs a task on a free worker. With `give` the task's data buffer is moved to the worker (the caller must not
   * use it again) when the data owns it; otherwise the data is copied.
   */
  run<Op extends WorkerTask['op']>(given: Extract<WorkerTask, { op: Op }>, give = false): Promise<ReplyOf<Op>> {
    // Shared memory (the import's and restore's reused buffers) is shared as it is, never copied or moved. A view
    // into a larger buffer (a chunk inside a request body or a pack) is copied alone and that copy moved: posting
    // the view would copy its whole underlying buffer, megabytes for a few kilobytes.
    const shared = given.data.buffer instanceof SharedArrayBuffer;
    const owned = ownsMemory(given.data);
    const task = shared || owned ? given : { ...given, data: ownCopy(given.data) };
    const transfer = shared ? [] : give || !owned ? [task.data.buffer as ArrayBuffer] : [];
    const t = task as WorkerTask;
    if ((t.op === 'scan' || t.op === 'rebuild') && t.out instanceof ArrayBuffer) transfer.push(t.out); // shared memory is shared, not moved
    if (t.op === 'rebuild' && give) for (const { base } of t.items) if (base && 'data' in base && ownsMemory(base.data)) transfer.push(base.data.buffer as ArrayBuffer);
    return new Promise<WorkerReply>((resolve, reject) => {
      this.queue.push({ task, transfer, resolve, reject });
      this.dispatch();
    }) as Promise<ReplyOf<Op>>;
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      let slot = this.slots.find((s) => !s.busy);
      if (!slot && this.slots.length < this.size) slot = this.spawn();
      if (!slot) return;
      const job = this.queue.shift() as Pending;
      slot.busy = job;
      slot.worker.ref();
      const id = this.nextId++;
      this.waiting.set(id, job);
      slot.worker.postMessage({ id, task: job.task }, job.transfer);
    }
  }

  private spawn(): Slot {
    const slot = new Slot(startWorker());
    slot.worker.on('message', (msg: { id: number; reply?: WorkerReply; error?: string }) => {
      const job = this.waiting.get(msg.id);
      this.waiting.delete(msg.id);
      slot.busy = undefined;
      slot.worker.unref();
      if (job) {
        if (msg.reply) job.resolve(msg.reply);
        else job.reject(new RefugeError('internal', `store worker failed: ${msg.error ?? 'unknown error'}`));
      }
      this.dispatch();
    });
    slot.worker.on('error', (err) => {
      const job = slot.busy;
      slot.busy = undefined;
      this.slots.splice(this.slots.indexOf(slot), 1);
      job?.reject(new RefugeError('internal', `store worker crashed: ${err.message}`, { cause: err }));
      this.dispatch();
    });
    this.slots.push(slot);
    return slot;
  }
}

let shared: WorkerPool | undefined;
export const workerPool = (): WorkerPool => (shared ??= new WorkerPool());
