import { createConnection, type Socket } from 'node:net';
import { randomInt } from 'node:crypto';
import { access } from 'node:fs/promises';
import { RefugeError } from '../../core/errors.js';
import type { AppHook, HookContext } from './app-hooks.js';

/**
 * A minimal client of the qemu guest agent (qemu-ga, reached through the VM's virtio-serial chardev socket, e.g.
 * `-chardev socket,path=qga.sock,server=on,wait=off,id=qga0 -device virtio-serial
 * -device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0`). The protocol is QMP-like: one JSON object per
 * request, `{"execute": NAME, "arguments": {...}}`, answered by `{"return": ...}` or `{"error": {class, desc}}`,
 * without a greeting or capabilities negotiation. A reply left over from an earlier, abandoned exchange may still be
 * queued, so every session starts with `guest-sync` and a random id and discards replies until that id comes back.
 */
export class GuestAgentClient {
  private buffer = '';
  private waiter: { resolve: (v: unknown) => void; reject: (e: Error) => void } | undefined;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => this.onData(d));
    socket.on('close', () => this.fail(new RefugeError('unavailable', 'guest agent connection closed')));
    socket.on('error', (e) => this.fail(RefugeError.wrap(e, 'guest agent connection failed', 'unavailable')));
  }

  static async connect(path: string, signal: AbortSignal): Promise<GuestAgentClient> {
    const socket = createConnection(path);
    const client = new GuestAgentClient(socket);
    const abort = () => socket.destroy(new Error('guest agent did not answer in time'));
    signal.addEventListener('abort', abort, { once: true });
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', reject);
      });
      const id = randomInt(1, 2 ** 31);
      await client.execute('guest-sync', { id }, (r) => r === id);
      return client;
    } catch (err) {
      socket.destroy();
      throw RefugeError.wrap(err, `cannot talk to the guest agent on ${path}`, 'unavailable');
    } finally {
      signal.removeEventListener('abort', abort);
    }
  }

  /** Runs a command; replies that `accept` rejects are stale ones, skipped. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, accept: (reply: unknown) => boolean = () => true): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.waiter = {
        resolve: (v) => {
          if (accept(v)) {
            this.waiter = undefined;
            resolve(v as T);
          }
        },
        reject,
      };
      this.socket.write(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + '\n');
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(data: string): void {
    this.buffer += data;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl).replace(/\xff/g, '').trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (!line) continue;
      let msg: { return?: unknown; error?: { class: string; desc: string } };
      try {
        msg = JSON.parse(line) as typeof msg;
      } catch {
        continue;
      }
      const w = this.waiter;
      if (!w) continue;
      if (msg.error) {
        this.waiter = undefined;
        w.reject(new RefugeError('failed_precondition', `guest agent error ${msg.error.class}: ${msg.error.desc}`));
      } else {
        w.resolve(msg.return);
      }
    }
  }

  private fail(err: Error): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(err);
  }
}

/**
 * Freezes the guest's filesystems through its guest agent (`guest-fsfreeze-freeze`, which flushes them first) and
 * thaws them after the cut (`guest-fsfreeze-thaw`). A VM without the socket (no guest agent configured) needs
 * nothing: the hook does nothing and the point is as consistent as the other hooks make it. The thaw is sent on
 * a new connection whatever happened to the freeze (a freeze that timed out may still have frozen the guest).
 */
export class GuestAgentFreezeHook implements AppHook {
  private present = false;

  constructor(private readonly socketPath: string) {}

  get description(): string {
    return `guest agent fsfreeze at ${this.socketPath}`;
  }

  async before(_ctx: HookContext, signal: AbortSignal): Promise<void> {
    this.present = await access(this.socketPath).then(() => true, () => false);
    if (!this.present) return;
    const client = await GuestAgentClient.connect(this.socketPath, signal);
    try {
      const frozen = client.execute<number>('guest-fsfreeze-freeze');
      await abortable(frozen, signal, 'guest-fsfreeze-freeze');
    } finally {
      client.close();
    }
  }

  async after(_ctx: HookContext, signal: AbortSignal): Promise<void> {
    if (!this.present) return;
    const client = await GuestAgentClient.connect(this.socketPath, signal);
    try {
      await abortable(client.execute<number>('guest-fsfreeze-thaw'), signal, 'guest-fsfreeze-thaw');
    } finally {
      client.close();
    }
  }
}

function abortable<T>(p: Promise<T>, signal: AbortSignal, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new RefugeError('unavailable', `${what}: the guest agent did not answer in time`));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
