import { createServer, type Server, type Socket } from 'node:net';
import { rm } from 'node:fs/promises';
import { RefugeError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import { NbdConnection } from './connection.js';
import type { ExportCatalog, NbdExport } from './handshake.js';

export interface NbdServerOptions {
  /** Where to listen: a unix socket path (what qemu's `nbd:unix:PATH` uses), or a TCP port on a host. */
  listen: { socketPath: string } | { host: string; port: number };
  exports: NbdExport[];
  log?: Logger;
}

/**
 * An NBD server (fixed newstyle, simple replies; protocol.md) for a fixed set of exports. The first export is also
 * the default one (the empty name), so `qemu -drive file=nbd:unix:SOCK` reaches it without naming it. Each client
 * connection is independent: one that misbehaves is dropped while the others keep working.
 */
export class NbdServer implements ExportCatalog {
  private readonly connections = new Set<NbdConnection>();
  private readonly exports: NbdExport[];
  private readonly log: Logger;

  private constructor(
    private readonly server: Server,
    private readonly o: NbdServerOptions,
  ) {
    this.exports = [...o.exports];
    this.log = o.log ?? silentLogger;
  }

  static async start(o: NbdServerOptions): Promise<NbdServer> {
    if (o.exports.length === 0) throw new RefugeError('invalid_argument', 'an NBD server needs at least one export');
    if ('socketPath' in o.listen && Buffer.byteLength(o.listen.socketPath) > 107) {
      throw new RefugeError('invalid_argument', `NBD socket path ${o.listen.socketPath} is longer than the 107 bytes a unix socket address holds`, {
        hint: 'choose a shorter folder for the sockets (refuge agent --nbd-dir)',
      });
    }
    // Paused: an NbdConnection adopts the socket's handle to read into buffers of its choosing (read-in-place.ts).
    const server = createServer({ noDelay: true, allowHalfOpen: false, pauseOnConnect: true });
    const nbd = new NbdServer(server, o);
    server.on('connection', (socket) => nbd.accept(socket));
    if ('socketPath' in o.listen) await rm(o.listen.socketPath, { force: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      if ('socketPath' in o.listen) server.listen(o.listen.socketPath, resolve);
      else server.listen(o.listen.port, o.listen.host, resolve);
    }).catch((err: unknown) => {
      throw RefugeError.wrap(err, `NBD server cannot listen on ${describe(o.listen)}`, 'unavailable');
    });
    server.on('error', (err) => nbd.log.error({ err }, 'nbd server error'));
    return nbd;
  }

  /** `nbd+unix:///?socket=PATH` or `nbd://host:port` (the URI form nbdinfo, nbdcopy and fio take). */
  get uri(): string {
    const l = this.o.listen;
    if ('socketPath' in l) return `nbd+unix:///?socket=${l.socketPath}`;
    const address = this.server.address();
    const port = typeof address === 'object' && address ? address.port : l.port;
    return `nbd://${l.host}:${port}`;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  list(): NbdExport[] {
    return this.exports;
  }

  find(name: string): NbdExport | undefined {
    return name === '' ? this.exports[0] : this.exports.find((e) => e.name === name);
  }

  private accept(socket: Socket): void {
    const c = new NbdConnection(socket, this, this.log);
    this.connections.add(c);
    void c.closed.then(() => this.connections.delete(c));
  }

  /** Stops listening and drops every client. */
  async close(): Promise<void> {
    const stopped = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const all = [...this.connections];
    for (const c of all) c.hangUp('server shutting down');
    await Promise.all(all.map((c) => c.closed));
    await stopped;
    if ('socketPath' in this.o.listen) await rm(this.o.listen.socketPath, { force: true });
  }
}

function describe(l: NbdServerOptions['listen']): string {
  return 'socketPath' in l ? l.socketPath : `${l.host}:${l.port}`;
}
