import { Socket, type OnReadOpts } from 'node:net';

/**
 * An accepted connection whose reads land in buffers its owner chooses (net.Socket's `onread`), instead of a fresh
 * 64 KiB buffer per read: a WRITE's payload is read straight into the buffer the device call gets, and headers into
 * one reused scratch buffer. Under 1 MiB sequential writes this removes 16 allocations, and most reads, per
 * request (docs/benchmarks.md, P4).
 *
 * Node 20 offers `onread` only on sockets it connects itself, so the accepted socket's handle is adopted by a new
 * Socket that has it, the way net.Server builds its own (`new Socket({ handle })`), and the accepted one is
 * destroyed without its handle (which only tells the server the connection left its count). The server must accept
 * with `pauseOnConnect`, so that nothing was read yet. Returns undefined where the handle cannot be adopted (a
 * later Node that changed its internals): the caller then reads the accepted socket as usual.
 */
export function readInPlace(accepted: Socket, onread: OnReadOpts): Socket | undefined {
  const inner = accepted as unknown as { _handle?: { readStart?: unknown; reading?: boolean } | null };
  const handle = inner._handle;
  if (!handle || typeof handle.readStart !== 'function' || handle.reading === true) return undefined;
  inner._handle = null;
  accepted.destroy();
  return new Socket({ handle, onread, readable: true, writable: true } as ConstructorParameters<typeof Socket>[0]);
}
