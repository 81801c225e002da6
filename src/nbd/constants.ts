/**
 * Numbers of the NBD protocol that this server speaks (see protocol.md beside this file for the exchange).
 * All integers on the wire are big-endian.
 */

export const MAGIC = {
  /** 'NBDMAGIC': first 8 bytes of every handshake. */
  init: 0x4e42444d41474943n,
  /** 'IHAVEOPT': second 8 bytes of the newstyle handshake, and the prefix of every client option. */
  option: 0x49484156454f5054n,
  /** Prefix of every option reply. */
  optionReply: 0x3e889045565a9n,
  request: 0x25609513,
  simpleReply: 0x67446698,
} as const;

/** Handshake flags (server -> client, 16 bits). */
export const HANDSHAKE_FLAG = { fixedNewstyle: 1 << 0, noZeroes: 1 << 1 } as const;
/** Client flags (client -> server, 32 bits); any other bit set makes the server drop the connection. */
export const CLIENT_FLAG = { fixedNewstyle: 1 << 0, noZeroes: 1 << 1 } as const;

export const OPTION = {
  exportName: 1,
  abort: 2,
  list: 3,
  startTls: 5,
  info: 6,
  go: 7,
  structuredReply: 8,
} as const;

export const REPLY = {
  ack: 1,
  server: 2,
  info: 3,
  errUnsupported: 0x80000001,
  errPolicy: 0x80000002,
  errInvalid: 0x80000003,
  errUnknown: 0x80000006,
} as const;

export const INFO = { export: 0, name: 1, description: 2, blockSize: 3 } as const;

/** Transmission flags (16 bits), sent with the export's size. */
export const TRANSMISSION_FLAG = {
  hasFlags: 1 << 0,
  readOnly: 1 << 1,
  sendFlush: 1 << 2,
  sendFua: 1 << 3,
  sendTrim: 1 << 5,
  sendWriteZeroes: 1 << 6,
  canMultiConn: 1 << 8,
} as const;

export const COMMAND = {
  read: 0,
  write: 1,
  disconnect: 2,
  flush: 3,
  trim: 4,
  writeZeroes: 6,
} as const;

export const COMMAND_FLAG = { fua: 1 << 0, noHole: 1 << 1 } as const;

/** Error values in replies: Linux errno numbers, as the protocol defines them. */
export const ERRNO = {
  ok: 0,
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

/** Largest READ or WRITE the server accepts (advertised as the maximum block size). */
export const MAX_REQUEST_BYTES = 32 * 1024 * 1024;
/**
 * A WRITE longer than MAX_REQUEST_BYTES but at most this long has its payload read and dropped, then gets EINVAL;
 * a longer one means the client is broken or hostile, and the connection is dropped instead.
 */
export const MAX_DISCARDED_WRITE_BYTES = 64 * 1024 * 1024;
/** Option data longer than this (export names are at most 4 KiB) ends the connection. */
export const MAX_OPTION_BYTES = 64 * 1024;
/** Options a client may send before choosing an export; more means it is looping, and it is dropped. */
export const MAX_OPTIONS = 256;

export const REQUEST_HEADER_BYTES = 28;
export const SIMPLE_REPLY_HEADER_BYTES = 16;
