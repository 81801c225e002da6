import { createConnection, createServer, type Server, type Socket } from 'node:net';

/** A TCP proxy that counts the bytes it carries each way: what really crossed the wire, HTTP framing included. */
export class CountingProxy {
  private readonly counts = { up: 0, down: 0 };
  private readonly sockets = new Set<Socket>();
  private readonly server: Server;

  private constructor(targetHost: string, targetPort: number) {
    const counts = this.counts;
    const sockets = this.sockets;
    this.server = createServer((client) => {
      // No Nagle on either leg: a proxy that delays small writes would measure TCP's 40 ms ACK timer, not Refuge.
      client.setNoDelay(true);
      const upstream = createConnection({ port: targetPort, host: targetHost, noDelay: true });
      for (const socket of [client, upstream]) {
        sockets.add(socket);
        socket.once('close', () => sockets.delete(socket));
      }
      client.on('data', (d: Buffer) => {
        counts.up += d.length;
        upstream.write(d);
      });
      upstream.on('data', (d: Buffer) => {
        counts.down += d.length;
        client.write(d);
      });
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
    });
  }

  static async start(targetHost: string, targetPort: number): Promise<CountingProxy> {
    const proxy = new CountingProxy(targetHost, targetPort);
    await new Promise<void>((r) => proxy.server.listen(0, '127.0.0.1', r));
    return proxy;
  }

  get port(): number {
    const a = this.server.address();
    return typeof a === 'object' && a ? a.port : 0;
  }

  /** Bytes carried both ways so far. */
  get total(): number {
    return this.counts.up + this.counts.down;
  }

  /** Stops, dropping idle keep-alive connections (a server may keep them for a minute). */
  close(): Promise<void> {
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    for (const s of this.sockets) s.destroy();
    return closed;
  }
}
