import { createConnection, type Socket } from 'node:net';

/**
 * A deliberately low-level NBD client for tests: it sends exactly the bytes a test builds (well-formed or not) and
 * reads replies byte for byte, so the server's answers to malformed input can be asserted.
 */
export class RawNbdClient {
  private buffered = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  private ended = false;
  readonly closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, d]);
      this.wake();
    });
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.ended = true;
        this.wake();
        resolve();
      }),
    );
    socket.on('error', () => undefined);
  }

  static connect(socketPath: string): Promise<RawNbdClient> {
    return new Promise((resolve, reject) => {
      const s = createConnection(socketPath, () => resolve(new RawNbdClient(s)));
      s.once('error', reject);
    });
  }

  /** Connects and completes the handshake with OPT_GO on `name` (the default export when ''). */
  static async attach(socketPath: string, name = ''): Promise<RawNbdClient> {
    const c = await RawNbdClient.connect(socketPath);
    await c.read(18);
    c.send(u32(3));
    const data = Buffer.concat([u32(Buffer.byteLength(name)), Buffer.from(name), u16(0)]);
    c.option(7, data);
    for (;;) {
      const r = await c.optionReply();
      if (r.type === 1) return c;
      if (r.type !== 3) throw new Error(`OPT_GO failed with reply type 0x${r.type.toString(16)}`);
    }
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  send(...parts: Buffer[]): void {
    this.socket.write(Buffer.concat(parts));
  }

  /** Exactly `n` bytes; rejects if the server closes first or nothing arrives within `timeoutMs`. */
  async read(n: number, timeoutMs = 10_000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.buffered.length < n) {
      if (this.ended) throw new Error(`connection closed after ${this.buffered.length} of ${n} bytes`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${n} bytes`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
    const out = this.buffered.subarray(0, n);
    this.buffered = this.buffered.subarray(n);
    return out;
  }

  option(option: number, data: Buffer = Buffer.alloc(0)): void {
    this.send(u64(0x49484156454f5054n), u32(option), u32(data.length), data);
  }

  async optionReply(): Promise<{ option: number; type: number; data: Buffer }> {
    const h = await this.read(20);
    if (h.readBigUInt64BE(0) !== 0x3e889045565a9n) throw new Error('bad option reply magic');
    const data = await this.read(h.readUInt32BE(16));
    return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data };
  }

  request(type: number, handle: bigint, offset: bigint | number, length: number, flags = 0, payload?: Buffer): void {
    this.send(u32(0x25609513), u16(flags), u16(type), u64(handle), u64(BigInt(offset)), u32(length), payload ?? Buffer.alloc(0));
  }

  /** A simple reply; `dataLength` bytes follow it when the request was a successful READ. */
  async reply(dataLength = 0): Promise<{ error: number; handle: bigint; data: Buffer }> {
    const h = await this.read(16);
    if (h.readUInt32BE(0) !== 0x67446698) throw new Error('bad reply magic');
    const error = h.readUInt32BE(4);
    const data = error === 0 && dataLength > 0 ? await this.read(dataLength) : Buffer.alloc(0);
    return { error, handle: h.readBigUInt64BE(8), data };
  }

  get isClosed(): boolean {
    return this.ended;
  }

  close(): void {
    this.socket.destroy();
  }
}

export const u16 = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
};
export const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
export const u64 = (n: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(n);
  return b;
};

export const NBD = {
  cmd: { read: 0, write: 1, disc: 2, flush: 3, trim: 4, writeZeroes: 6 },
  opt: { exportName: 1, abort: 2, list: 3, startTls: 5, info: 6, go: 7, structuredReply: 8 },
  rep: { ack: 1, server: 2, info: 3, errUnsup: 0x80000001, errPolicy: 0x80000002, errInvalid: 0x80000003, errUnknown: 0x80000006 },
  errno: { EPERM: 1, EIO: 5, EINVAL: 22, ENOSPC: 28 },
} as const;
