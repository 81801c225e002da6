/**
 * Buffers that WRITE payloads are read into, reused from request to request. A fresh buffer of a megabyte is a
 * fresh mapping (the agent's unit sets glibc's mmap threshold to 128 KiB), and on a machine whose free memory is
 * handed back to its host (page reporting in a VM) each first touch of a page costs a fault in the host: about 3 s
 * per GiB here (docs/design-delta-points.md, "Where the kernel's time goes"). Reused buffers are touched once.
 */

/** Payloads up to this many bytes are copied into heap buffers (malloc reuses their memory). */
const SMALL_BYTES = 64 * 1024;
/** Payloads up to this many bytes get a pooled buffer; longer ones (rare: clients split writes at 1-4 MiB) their own. */
const POOLED_PAYLOAD_BYTES = 1024 * 1024;
/**
 * Free buffers kept across all connections: one connection has at most 16 MiB of writes in flight
 * (connection.ts), plus the one being read.
 */
const KEEP = 17;

const free: Buffer[] = [];
let created = 0;

/** A payload's memory, and how to give it back once nothing reads it any more (after its device call settled). */
export interface Payload {
  readonly data: Buffer;
  release(): void;
}

const keepNothing = (): void => undefined;

function fresh(): Buffer {
  created++;
  return Buffer.allocUnsafeSlow(POOLED_PAYLOAD_BYTES);
}

export function payloadBuffer(length: number): Payload {
  if (length <= SMALL_BYTES) return { data: Buffer.allocUnsafe(length), release: keepNothing };
  if (length > POOLED_PAYLOAD_BYTES) return { data: Buffer.allocUnsafeSlow(length), release: keepNothing };
  const whole = free.pop() ?? fresh();
  let released = false;
  return {
    data: whole.subarray(0, length),
    release: () => {
      if (released) return;
      released = true;
      if (free.length < KEEP) free.push(whole);
    },
  };
}

/** Pooled buffers free now, and made so far (tests check that buffers come back). */
export function payloadPoolStats(): { free: number; created: number } {
  return { free: free.length, created };
}
