import type { BlockDevice } from './block-device.js';
import { HANDSHAKE_FLAG, INFO, MAGIC, MAX_REQUEST_BYTES, OPTION, REPLY, TRANSMISSION_FLAG } from './constants.js';

/**
 * The option-haggling half of the fixed newstyle handshake (protocol.md, "Handshake"): given one option from the
 * client, the replies to send and what happens next. Pure functions over bytes, so every reply is testable without
 * a socket.
 */

export interface NbdExport {
  /** The name clients ask for; the empty name selects the server's default export. */
  name: string;
  description?: string;
  device: BlockDevice;
}

export interface ExportCatalog {
  list(): NbdExport[];
  /** The export for a name, '' meaning the default one; undefined if there is none. */
  find(name: string): NbdExport | undefined;
}

export type OptionOutcome =
  | { next: 'options'; replies: Buffer[] }
  /** OPT_GO or OPT_EXPORT_NAME succeeded: send the replies, then serve `export` (transmission phase). */
  | { next: 'transmission'; replies: Buffer[]; export: NbdExport }
  /** Send the replies (possibly none), then close the connection. */
  | { next: 'close'; replies: Buffer[]; reason: string };

export function greeting(): Buffer {
  const b = Buffer.alloc(18);
  b.writeBigUInt64BE(MAGIC.init, 0);
  b.writeBigUInt64BE(MAGIC.option, 8);
  b.writeUInt16BE(HANDSHAKE_FLAG.fixedNewstyle | HANDSHAKE_FLAG.noZeroes, 16);
  return b;
}

export function transmissionFlags(device: BlockDevice): number {
  let flags = TRANSMISSION_FLAG.hasFlags | TRANSMISSION_FLAG.sendFlush | TRANSMISSION_FLAG.sendFua | TRANSMISSION_FLAG.canMultiConn;
  if (device.readOnly) flags |= TRANSMISSION_FLAG.readOnly;
  else flags |= TRANSMISSION_FLAG.sendTrim | TRANSMISSION_FLAG.sendWriteZeroes;
  return flags;
}

export function optionReply(option: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.allocUnsafe(20 + data.length);
  b.writeBigUInt64BE(MAGIC.optionReply, 0);
  b.writeUInt32BE(option, 8);
  b.writeUInt32BE(type >>> 0, 12);
  b.writeUInt32BE(data.length, 16);
  data.copy(b, 20);
  return b;
}

const errorReply = (option: number, type: number, message: string) => optionReply(option, type, Buffer.from(message, 'utf8'));

function infoReply(option: number, info: number, payload: Buffer): Buffer {
  const data = Buffer.allocUnsafe(2 + payload.length);
  data.writeUInt16BE(info, 0);
  payload.copy(data, 2);
  return optionReply(option, REPLY.info, data);
}

function exportInfo(option: number, e: NbdExport): Buffer {
  const p = Buffer.allocUnsafe(10);
  p.writeBigUInt64BE(BigInt(e.device.sizeBytes), 0);
  p.writeUInt16BE(transmissionFlags(e.device), 8);
  return infoReply(option, INFO.export, p);
}

/** The reply to NBD_OPT_EXPORT_NAME, which has no error path: size, flags, and 124 zeroes unless NO_ZEROES. */
export function exportNameReply(e: NbdExport, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(noZeroes ? 10 : 134);
  b.writeBigUInt64BE(BigInt(e.device.sizeBytes), 0);
  b.writeUInt16BE(transmissionFlags(e.device), 8);
  return b;
}

/** Handles one option during haggling. `data` is the whole option payload (its length was checked by the caller). */
export function handleOption(option: number, data: Buffer, catalog: ExportCatalog, noZeroes: boolean): OptionOutcome {
  switch (option) {
    case OPTION.exportName: {
      const e = catalog.find(data.toString('utf8'));
      // This option cannot answer with an error: the protocol's only way to refuse it is to hang up.
      if (!e) return { next: 'close', replies: [], reason: `client asked for unknown export '${data.toString('utf8')}'` };
      return { next: 'transmission', replies: [exportNameReply(e, noZeroes)], export: e };
    }
    case OPTION.abort:
      return { next: 'close', replies: [optionReply(option, REPLY.ack)], reason: 'client aborted the handshake' };
    case OPTION.list: {
      if (data.length !== 0) return { next: 'options', replies: [errorReply(option, REPLY.errInvalid, 'NBD_OPT_LIST takes no data')] };
      const replies = catalog.list().map((e) => {
        const name = Buffer.from(e.name, 'utf8');
        const desc = Buffer.from(e.description ?? '', 'utf8');
        const d = Buffer.allocUnsafe(4 + name.length + desc.length);
        d.writeUInt32BE(name.length, 0);
        name.copy(d, 4);
        desc.copy(d, 4 + name.length);
        return optionReply(option, REPLY.server, d);
      });
      return { next: 'options', replies: [...replies, optionReply(option, REPLY.ack)] };
    }
    case OPTION.info:
    case OPTION.go:
      return infoOrGo(option, data, catalog);
    case OPTION.startTls:
      return { next: 'options', replies: [errorReply(option, REPLY.errPolicy, 'TLS is not offered on this local socket')] };
    default:
      // Structured replies, metadata contexts, extended headers and anything newer: not spoken here.
      return { next: 'options', replies: [errorReply(option, REPLY.errUnsupported, `option ${option} is not supported`)] };
  }
}

/** NBD_OPT_INFO / NBD_OPT_GO: u32 name length, name, u16 count, count x u16 information requests. */
function infoOrGo(option: number, data: Buffer, catalog: ExportCatalog): OptionOutcome {
  const invalid = (why: string): OptionOutcome => ({ next: 'options', replies: [errorReply(option, REPLY.errInvalid, why)] });
  if (data.length < 6) return invalid('option data too short');
  const nameLength = data.readUInt32BE(0);
  if (nameLength > data.length - 6) return invalid('export name length exceeds the option data');
  const name = data.toString('utf8', 4, 4 + nameLength);
  const count = data.readUInt16BE(4 + nameLength);
  if (data.length !== 6 + nameLength + 2 * count) return invalid('information request count does not match the option length');
  const e = catalog.find(name);
  if (!e) return { next: 'options', replies: [errorReply(option, REPLY.errUnknown, `no export named '${name}'`)] };
  const requested = new Set<number>();
  for (let i = 0; i < count; i++) requested.add(data.readUInt16BE(6 + nameLength + 2 * i));
  const replies = [exportInfo(option, e)];
  if (requested.has(INFO.name)) replies.push(infoReply(option, INFO.name, Buffer.from(e.name, 'utf8')));
  if (requested.has(INFO.description) && e.description) replies.push(infoReply(option, INFO.description, Buffer.from(e.description, 'utf8')));
  if (requested.has(INFO.blockSize)) {
    // Any alignment works (byte-granular file I/O); 4 KiB is what the page cache and change tracking prefer.
    const p = Buffer.allocUnsafe(12);
    p.writeUInt32BE(1, 0);
    p.writeUInt32BE(4096, 4);
    p.writeUInt32BE(MAX_REQUEST_BYTES, 8);
    replies.push(infoReply(option, INFO.blockSize, p));
  }
  replies.push(optionReply(option, REPLY.ack));
  return option === OPTION.go ? { next: 'transmission', replies, export: e } : { next: 'options', replies };
}
