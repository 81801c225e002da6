import { createConnection, type Socket } from 'node:net';
import { RefugeError } from '../../core/errors.js';

/**
 * A minimal client of qemu's QMP (QEMU Machine Protocol): JSON objects, one per line, over a unix socket.
 * On connect qemu sends a greeting; the client must send `qmp_capabilities` before any other command. Replies
 * carry `return` or `error`; asynchronous `event` messages may arrive at any time and are ignored here.
 */
export class QmpClient {
  private buffer = '';
  private pending: { resolve: (v: unknown) => void; reject: (e: Error) => void }[] = [];
  private closed = false;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => this.onData(d));
    socket.on('close', () => this.failAll(new RefugeError('unavailable', 'QMP connection closed')));
    socket.on('error', (e) => this.failAll(RefugeError.wrap(e, 'QMP connection failed', 'unavailable')));
  }

  static async connect(path: string, timeoutMs = 5000): Promise<QmpClient> {
    const socket = createConnection(path);
    const client = new QmpClient(socket);
    // The greeting counts as the reply to a virtual first request.
    const greeting = new Promise((resolve, reject) => client.pending.push({ resolve, reject }));
    const timer = setTimeout(() => socket.destroy(new Error(`no QMP greeting within ${timeoutMs} ms`)), timeoutMs);
    try {
      await greeting;
      await client.execute('qmp_capabilities');
    } catch (err) {
      socket.destroy();
      throw RefugeError.wrap(err, `cannot talk QMP on ${path}`, 'unavailable');
    } finally {
      clearTimeout(timer);
    }
    return client;
  }

  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.closed) return Promise.reject(new RefugeError('unavailable', 'QMP connection closed'));
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ resolve: resolve as (v: unknown) => void, reject });
      this.socket.write(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + '\n');
    });
  }

  close(): void {
    this.closed = true;
    this.socket.destroy();
  }

  private onData(data: string): void {
    this.buffer += data;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (!line) continue;
      let msg: { QMP?: unknown; return?: unknown; error?: { class: string; desc: string }; event?: string };
      try {
        msg = JSON.parse(line) as typeof msg;
      } catch {
        continue;
      }
      if (msg.event !== undefined) continue;
      const waiter = this.pending.shift();
      if (!waiter) continue;
      if (msg.error) waiter.reject(new RefugeError('internal', `QMP error ${msg.error.class}: ${msg.error.desc}`));
      else waiter.resolve(msg.QMP ?? msg.return);
    }
  }

  private failAll(err: Error): void {
    this.closed = true;
    for (const p of this.pending.splice(0)) p.reject(err);
  }
}

/** Runs one QMP command on a fresh connection and closes it. */
export async function qmpOnce<T = unknown>(path: string, command: string, args?: Record<string, unknown>): Promise<T> {
  const client = await QmpClient.connect(path);
  try {
    return await client.execute<T>(command, args);
  } finally {
    client.close();
  }
}
