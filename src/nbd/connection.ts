import type { Socket } from 'node:net';
import { silentLogger, type Logger } from '../core/log.js';
import type { BlockDevice } from './block-device.js';
import {
  CLIENT_FLAG,
  COMMAND,
  COMMAND_FLAG,
  ERRNO,
  MAGIC,
  MAX_DISCARDED_WRITE_BYTES,
  MAX_OPTION_BYTES,
  MAX_OPTIONS,
  MAX_REQUEST_BYTES,
  REQUEST_HEADER_BYTES,
  SIMPLE_REPLY_HEADER_BYTES,
} from './constants.js';
import { greeting, handleOption, type ExportCatalog, type NbdExport } from './handshake.js';
import { payloadBuffer, type Payload } from './payload-pool.js';
import { readInPlace } from './read-in-place.js';
import { StreamReader } from './stream-reader.js';

interface Request {
  flags: number;
  type: number;
  handle: Buffer;
  offset: bigint;
  length: number;
}

/** Output queued beyond this pauses reading from the client until the socket drains (a client that never reads). */
const OUTPUT_HIGH_WATER = 32 * 1024 * 1024;
/** Asynchronous writes one connection may have running at once (synchronous devices never have any). */
const MAX_WRITES_IN_FLIGHT = 16;
/**
 * Bytes of asynchronous requests (write payloads, read buffers) in flight at which one connection stops parsing
 * until some finish: a client sending many large requests costs the agent at most this plus one request (32 MiB),
 * not 16 x 32 MiB (the agent's memory target, P11, is 150 MiB).
 */
const MAX_BYTES_IN_FLIGHT = 16 * 1024 * 1024;
/** A client must finish the handshake within this time, so idle half-open connections cannot pile up. */
const HANDSHAKE_TIMEOUT_MS = 30_000;
/** The reused buffer reads land in between payloads: about what a unix socket holds (its sender's buffer, 208 KiB). */
const SCRATCH_BYTES = 256 * 1024;
/** A payload with at least this much still to come is read straight into its own buffer; less comes through scratch. */
const IN_PLACE_MIN_BYTES = 64 * 1024;

/**
 * One client connection: the fixed newstyle handshake, then the transmission phase with simple replies
 * (protocol.md). Requests are handled in arrival order; a synchronous device answers each before the next is
 * parsed, so many requests arriving together are answered in one corked batch of writes. A protocol violation
 * that leaves the byte stream unparseable ends this connection only; the server and other clients carry on.
 */
export class NbdConnection {
  private readonly reader = new StreamReader();
  private phase: 'flags' | 'options' | 'transmission' | 'closed' = 'flags';
  private noZeroes = false;
  private optionsSeen = 0;
  private optionHeader: { option: number; length: number } | undefined;
  private device: BlockDevice | undefined;
  /** A WRITE whose header has arrived and whose payload is being read into its buffer. */
  private filling: { req: Request; payload: Payload; filled: number } | undefined;
  /** Where reads land when no large payload is being filled (read-in-place.ts); everything read there is used or copied before the next read. */
  private readonly scratch = Buffer.allocUnsafeSlow(SCRATCH_BYTES);
  /** The buffer the socket's next read lands in, and for an in-place target, the payload and offset it was cut for. */
  private target: Buffer | undefined;
  private targetFor: { filling: NonNullable<NbdConnection['filling']>; at: number } | undefined;
  private readonly socket: Socket;
  /** Payload bytes of an oversized WRITE still to drop, then its handle gets EINVAL. */
  private discard: { left: number; handle: Buffer } | undefined;
  /** Parsing waits: too many writes in flight, or a request waits for them to finish. */
  private busy = false;
  /** Asynchronous device calls running (writes may overlap; everything else runs alone), and their bytes. */
  private inFlight = 0;
  private bytesInFlight = 0;
  /** A request that must wait until the writes in flight have finished. */
  private afterWrites: { req: Request; payload: Payload | undefined } | undefined;
  private waitingForDrain = false;
  private readonly handshakeTimer: NodeJS.Timeout;
  readonly closed: Promise<void>;

  /** `accepted` comes from a server listening with `pauseOnConnect` (server.ts): nothing has been read from it. */
  constructor(
    accepted: Socket,
    private readonly catalog: ExportCatalog,
    private readonly log: Logger = silentLogger,
  ) {
    const socket = readInPlace(accepted, { buffer: () => this.nextTarget(), callback: (n, buf) => this.arrived(n, buf as Buffer) }) ?? this.readPieces(accepted);
    this.socket = socket;
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    this.handshakeTimer = setTimeout(() => this.hangUp('handshake not finished in time'), HANDSHAKE_TIMEOUT_MS);
    this.handshakeTimer.unref();
    socket.on('error', (err) => this.log.debug({ err }, 'nbd connection error'));
    // After our own end() (OPT_ABORT, DISC) the replies still queued go out before the socket closes by itself.
    socket.on('end', () => this.phase !== 'closed' && this.hangUp('client closed the connection'));
    socket.on('close', () => {
      clearTimeout(this.handshakeTimer);
      this.phase = 'closed';
      this.filling?.payload.release();
      this.filling = undefined;
    });
    socket.write(greeting());
  }

  /** Where the next read lands: the rest of a large payload being filled, else the scratch buffer. */
  private nextTarget(): Buffer {
    const f = this.filling;
    // Node keeps the buffer given here for the next read, however long that is in coming (reading may be paused
    // meanwhile). A payload region is given only while nothing but a read can move the payload on: the reader holds
    // no bytes for it and parsing is not held back (busy, waiting for drain); else a pump() in between would fill
    // the region from the reader and the read would land on top (or in a buffer given back to the pool).
    const inPlace = f !== undefined && this.reader.available === 0 && !this.busy && !this.waitingForDrain && f.payload.data.length - f.filled >= IN_PLACE_MIN_BYTES;
    this.target = inPlace ? f.payload.data.subarray(f.filled) : this.scratch;
    this.targetFor = inPlace ? { filling: f, at: f.filled } : undefined;
    return this.target;
  }

  /** A read of `n` bytes landed in `buf` (what nextTarget gave); returns false to stop reading (busy). */
  private arrived(n: number, buf: Buffer): boolean {
    // Closed (OPT_ABORT, DISC, a hang-up): what a client still sends is dropped, while reading goes on to its end.
    if (this.phase === 'closed') return true;
    const f = this.filling;
    if (buf !== this.scratch) {
      // In place: nextTarget only cuts a region nothing else can move, so this is a bug if it fails; the bytes landed
      // in memory that is not theirs, and the connection cannot be trusted any more.
      if (!f || buf !== this.target || this.targetFor?.filling !== f || this.targetFor.at !== f.filled) {
        this.log.error('nbd read landed in a payload buffer that was not waiting for it');
        this.hangUp('internal error: stale read target');
        return false;
      }
      f.filled += n;
    } else {
      let piece = buf.subarray(0, n);
      if (f && this.reader.available === 0) {
        // Nothing of the payload waits in the reader: these bytes come next.
        const take = Math.min(n, f.payload.data.length - f.filled);
        piece.copy(f.payload.data, f.filled, 0, take);
        f.filled += take;
        piece = piece.subarray(take);
      }
      this.reader.push(piece);
    }
    this.pump();
    this.reader.own(); // what was not parsed may lie in scratch, which the next read overwrites
    return !this.busy && !this.waitingForDrain;
  }

  /** Reads `socket` the usual way, a buffer per read (where readInPlace cannot adopt it). */
  private readPieces(socket: Socket): Socket {
    socket.on('data', (piece: Buffer) => {
      if (this.phase === 'closed') return;
      this.reader.push(piece);
      this.pump();
    });
    socket.resume();
    return socket;
  }

  /** Drops the connection (server shutdown, or a client that broke the protocol). */
  hangUp(reason: string): void {
    // Also when already closed by the protocol (OPT_ABORT, DISC): a client that never closes its side must not keep
    // the connection, and the server's close() waiting for it, open.
    if (this.phase !== 'closed') this.log.debug({ reason }, 'nbd connection closed');
    this.phase = 'closed';
    if (!this.socket.destroyed) this.socket.destroy();
  }

  private isOpen(): boolean {
    return this.phase !== 'closed';
  }

  private pump(): void {
    if (this.busy || this.waitingForDrain || this.phase === 'closed') return;
    this.socket.cork();
    try {
      while (!this.busy && this.isOpen() && this.step()) {
        if (this.socket.writableLength > OUTPUT_HIGH_WATER) {
          this.waitingForDrain = true;
          this.socket.once('drain', () => {
            this.waitingForDrain = false;
            this.socket.resume();
            this.pump();
          });
          break;
        }
      }
    } catch (err) {
      this.log.warn({ err }, 'nbd connection failed');
      this.hangUp('internal error');
    } finally {
      this.socket.uncork();
    }
    if (this.busy || this.waitingForDrain) this.socket.pause();
  }

  /** Consumes one message if it has arrived; returns whether it did. */
  private step(): boolean {
    switch (this.phase) {
      case 'flags':
        return this.clientFlags();
      case 'options':
        return this.option();
      case 'transmission':
        return this.transmission();
      default:
        return false;
    }
  }

  private clientFlags(): boolean {
    const b = this.reader.read(4);
    if (!b) return false;
    const flags = b.readUInt32BE(0);
    if ((flags & ~(CLIENT_FLAG.fixedNewstyle | CLIENT_FLAG.noZeroes)) !== 0) {
      this.hangUp(`unknown client flags 0x${flags.toString(16)}`); // the protocol requires dropping the connection
      return false;
    }
    this.noZeroes = (flags & CLIENT_FLAG.noZeroes) !== 0;
    this.phase = 'options';
    return true;
  }

  private option(): boolean {
    if (!this.optionHeader) {
      const h = this.reader.read(16);
      if (!h) return false;
      if (h.readBigUInt64BE(0) !== MAGIC.option) {
        this.hangUp('bad option magic');
        return false;
      }
      const length = h.readUInt32BE(12);
      if (length > MAX_OPTION_BYTES || ++this.optionsSeen > MAX_OPTIONS) {
        this.hangUp('option too long or too many options');
        return false;
      }
      this.optionHeader = { option: h.readUInt32BE(8), length };
    }
    const data = this.reader.read(this.optionHeader.length);
    if (!data) return false;
    const outcome = handleOption(this.optionHeader.option, data, this.catalog, this.noZeroes);
    this.optionHeader = undefined;
    for (const r of outcome.replies) this.socket.write(r);
    if (outcome.next === 'close') {
      this.log.debug({ reason: outcome.reason }, 'nbd handshake ended');
      this.phase = 'closed';
      this.socket.end();
      return false;
    }
    if (outcome.next === 'transmission') this.enterTransmission(outcome.export);
    return true;
  }

  private enterTransmission(e: NbdExport): void {
    clearTimeout(this.handshakeTimer);
    this.device = e.device;
    this.phase = 'transmission';
    this.log.debug({ export: e.name }, 'nbd client attached');
  }

  private transmission(): boolean {
    if (this.discard) {
      const dropped = this.reader.skip(this.discard.left);
      this.discard.left -= dropped;
      if (this.discard.left > 0) return dropped > 0;
      this.reply(this.discard.handle, ERRNO.EINVAL);
      this.discard = undefined;
      return true;
    }
    if (this.filling) {
      const f = this.filling;
      f.filled += this.reader.readInto(f.payload.data, f.filled, f.payload.data.length - f.filled);
      if (f.filled < f.payload.data.length) return false;
      this.filling = undefined;
      this.execute(f.req, f.payload);
      return true;
    }
    const h = this.reader.read(REQUEST_HEADER_BYTES);
    if (!h) return false;
    if (h.readUInt32BE(0) !== MAGIC.request) {
      this.hangUp('bad request magic'); // the stream cannot be resynchronized
      return false;
    }
    const req: Request = {
      flags: h.readUInt16BE(4),
      type: h.readUInt16BE(6),
      handle: Buffer.from(h.subarray(8, 16)),
      offset: h.readBigUInt64BE(16),
      length: h.readUInt32BE(24),
    };
    if (req.type === COMMAND.write) {
      if (req.length > MAX_REQUEST_BYTES) {
        if (req.length > MAX_DISCARDED_WRITE_BYTES) {
          this.hangUp(`write of ${req.length} bytes`);
          return false;
        }
        this.discard = { left: req.length, handle: req.handle };
        return true;
      }
      this.filling = { req, payload: payloadBuffer(req.length), filled: 0 };
      return true;
    }
    this.execute(req, undefined);
    return this.isOpen();
  }

  /**
   * Runs a request: writes may overlap each other (up to MAX_WRITES_IN_FLIGHT when the device answers
   * asynchronously), every other request waits until the writes before it finished, so a read, flush or zeroing
   * sees every write the client sent before it. On a read-only device there are no writes to wait for, so reads
   * overlap each other the same way (a device far away, such as a recovery point read from an object store,
   * answers many reads in the time of one).
   */
  private execute(req: Request, payload: Payload | undefined): void {
    if (req.type !== COMMAND.write && this.inFlight > 0 && !this.overlaps(req)) {
      this.afterWrites = { req, payload };
      this.busy = true;
      return;
    }
    this.checkThenRelease(req, payload);
  }

  /** Runs `check`; a payload no device call took is given back at once, one that was is given back when it settles. */
  private checkThenRelease(req: Request, payload: Payload | undefined): void {
    if (this.check(req, payload) !== true) payload?.release();
  }

  /** Checks a request against the export and runs it, replying with data or an errno; true if a device call took `payload`. */
  private check(req: Request, payload: Payload | undefined): boolean | void {
    // A request parked behind writes in flight when the connection closed: its client is gone and nothing may
    // change the disk after its owner took stock of it (the agent's clean stop), so it is dropped.
    if (this.phase === 'closed') return;
    if (req.type === COMMAND.disconnect) {
      this.log.debug('nbd client disconnected');
      this.phase = 'closed';
      this.socket.end();
      return;
    }
    const device = this.device as BlockDevice;
    const known = [COMMAND.read, COMMAND.write, COMMAND.flush, COMMAND.trim, COMMAND.writeZeroes] as number[];
    if (!known.includes(req.type) || (req.flags & ~(COMMAND_FLAG.fua | COMMAND_FLAG.noHole)) !== 0) {
      return this.reply(req.handle, ERRNO.EINVAL);
    }
    if (req.type === COMMAND.flush) return this.run(req, () => device.flush());
    const writes = req.type !== COMMAND.read;
    if (writes && device.readOnly) return this.reply(req.handle, ERRNO.EPERM);
    if (req.length === 0) return this.reply(req.handle, ERRNO.EINVAL);
    if (req.type === COMMAND.read && req.length > MAX_REQUEST_BYTES) return this.reply(req.handle, ERRNO.EINVAL);
    if (req.offset + BigInt(req.length) > BigInt(device.sizeBytes)) {
      return this.reply(req.handle, writes ? ERRNO.ENOSPC : ERRNO.EINVAL);
    }
    const offset = Number(req.offset);
    const fua = (req.flags & COMMAND_FLAG.fua) !== 0;
    switch (req.type) {
      case COMMAND.read: {
        const out = Buffer.allocUnsafe(SIMPLE_REPLY_HEADER_BYTES + req.length);
        return this.run(req, () => device.read(out.subarray(SIMPLE_REPLY_HEADER_BYTES), offset), out);
      }
      case COMMAND.write: {
        const p = payload as Payload;
        return this.run(req, () => device.write([p.data], offset, fua), undefined, p);
      }
      case COMMAND.writeZeroes:
        return this.run(req, () => device.writeZeroes(offset, req.length, fua));
      default:
        return this.run(req, () => device.trim(offset, req.length));
    }
  }

  /**
   * Runs a device call; replies when it completes (now, or when its promise settles), and then gives back the
   * write payload it read (BlockDevice's contract: a device keeps no reference to it). Returns true: the call took it.
   */
  private run(req: Request, call: () => void | Promise<void>, readReply?: Buffer, payload?: Payload): true {
    let result: void | Promise<void>;
    try {
      result = call();
    } catch (err) {
      payload?.release();
      this.reply(req.handle, errnoOf(err));
      return true;
    }
    if (!(result instanceof Promise)) {
      payload?.release();
      this.reply(req.handle, ERRNO.ok, readReply);
      return true;
    }
    const bytes = req.type === COMMAND.write || req.type === COMMAND.read ? req.length : 0;
    this.inFlight++;
    this.bytesInFlight += bytes;
    if (!this.overlaps(req) || this.full()) this.busy = true;
    result.then(
      () => this.reply(req.handle, ERRNO.ok, readReply),
      (err: unknown) => this.reply(req.handle, errnoOf(err)),
    ).finally(() => {
      payload?.release();
      this.inFlight--;
      this.bytesInFlight -= bytes;
      if (this.inFlight > 0 && (this.afterWrites || this.full())) return;
      this.busy = false;
      const waiting = this.afterWrites;
      this.afterWrites = undefined;
      if (waiting) {
        this.socket.cork();
        this.checkThenRelease(waiting.req, waiting.payload);
        this.socket.uncork();
      }
      if (this.busy || this.waitingForDrain) return; // the drain resumes reading
      this.socket.resume();
      this.pump();
    });
    return true;
  }

  /** Whether the requests in flight are as many, or hold as many bytes, as one connection may have. */
  private full(): boolean {
    return this.inFlight >= MAX_WRITES_IN_FLIGHT || this.bytesInFlight >= MAX_BYTES_IN_FLIGHT;
  }

  /** Whether a request may run while others are in flight: writes, and reads of a read-only device. */
  private overlaps(req: Request): boolean {
    return req.type === COMMAND.write || (req.type === COMMAND.read && this.device?.readOnly === true);
  }

  /** A simple reply; `withData` is a buffer whose first 16 bytes are left for this header (successful READ). */
  private reply(handle: Buffer, error: number, withData?: Buffer): void {
    if (this.phase === 'closed') return;
    const out = error === ERRNO.ok && withData ? withData : Buffer.allocUnsafe(SIMPLE_REPLY_HEADER_BYTES);
    out.writeUInt32BE(MAGIC.simpleReply, 0);
    out.writeUInt32BE(error, 4);
    handle.copy(out, 8);
    this.socket.write(out);
  }
}

/** Maps a device failure to the errno the protocol sends. */
function errnoOf(err: unknown): number {
  switch ((err as { code?: unknown } | null)?.code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return ERRNO.ENOSPC;
    case 'EROFS':
    case 'EPERM':
    case 'EACCES':
      return ERRNO.EPERM;
    case 'EINVAL':
      return ERRNO.EINVAL;
    case 'ENOMEM':
      return ERRNO.ENOMEM;
    case 'ESHUTDOWN':
      return ERRNO.ESHUTDOWN;
    default:
      return ERRNO.EIO;
  }
}
