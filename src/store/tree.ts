import { blobName, type BlobNaming } from './chunks.js';
import { RefugeError } from '../core/errors.js';

/**
 * Per-disk hash trees: how a point names every chunk of a disk without listing them all.
 * - Level-0 nodes (leaves) hold the hashes of FANOUT consecutive chunks; a level-L node holds the hashes of FANOUT
 *   level-(L-1) nodes, so a node at level L covers FANOUT^(L+1) chunks at an aligned position. The root is the
 *   lowest level whose one node covers the whole disk.
 * - A zero chunk, and a subtree of nothing but zero chunks, is the all-zero hash (ZERO_HASH) and is never stored:
 *   a sparse disk has a tiny tree.
 * - A node is a blob named by the SHA-256 of its bytes, so identical subtrees are stored once, a new point stores
 *   only the nodes on the paths to its changed chunks, and two trees compare by walking only where hashes differ.
 * Node layout: u8 version (1) | u8 level | u16 zero | u32 entry count | count x 32-byte hash.
 */

export const FANOUT = 256;
export const ZERO_HASH = '0'.repeat(64);
const ZERO = Buffer.alloc(32);
const HEADER = 8;

export interface NodeSource {
  /** The bytes of a stored node, already checked against its hash. */
  loadNode(hash: string): Promise<Buffer>;
}
export interface NodeSink {
  /** A node's name, as the store names blobs (chunks.ts blobName). */
  nameOf(bytes: Buffer): string;
  storeNode(hash: string, bytes: Buffer): void;
}

/** Chunks a node at `level` covers. */
const span = (level: number): number => FANOUT ** (level + 1);

export function treeHeight(count: number): number {
  let h = 0;
  while (span(h) < count) h++;
  return h;
}

/** How many entries the node at (level, k) has in a tree of `count` chunks. */
function entryCount(level: number, k: number, count: number): number {
  const first = k * span(level);
  const below = level === 0 ? 1 : span(level - 1);
  return Math.min(FANOUT, Math.ceil((count - first) / below));
}

export function encodeNode(level: number, entries: Buffer): Buffer {
  const out = Buffer.alloc(HEADER + entries.length);
  out.writeUInt8(1, 0);
  out.writeUInt8(level, 1);
  out.writeUInt32LE(entries.length / 32, 4);
  entries.copy(out, HEADER);
  return out;
}

export function decodeNode(bytes: Buffer, hash: string): { level: number; entries: Buffer } {
  const count = bytes.length >= HEADER ? bytes.readUInt32LE(4) : -1;
  if (bytes.length < HEADER || bytes.readUInt8(0) !== 1 || bytes.length !== HEADER + count * 32) {
    throw new RefugeError('integrity', `tree node ${hash} is malformed`, { details: { blob: hash } });
  }
  return { level: bytes.readUInt8(1), entries: bytes.subarray(HEADER) };
}

const toEntry = (hash: string | null): Buffer => (hash === null ? ZERO : Buffer.from(hash, 'hex'));
const fromEntry = (entries: Buffer, i: number): string | null => {
  const hex = entries.toString('hex', i * 32, i * 32 + 32);
  return hex === ZERO_HASH ? null : hex;
};

async function nodeEntries(source: NodeSource, hash: string, level: number, expected: number): Promise<Buffer> {
  if (hash === ZERO_HASH) return Buffer.alloc(expected * 32);
  const node = decodeNode(await source.loadNode(hash), hash);
  if (node.level !== level || node.entries.length !== expected * 32) {
    throw new RefugeError('integrity', `tree node ${hash} does not fit its place in the tree (level ${node.level}, ${node.entries.length / 32} entries; expected level ${level}, ${expected})`, {
      details: { blob: hash },
    });
  }
  return Buffer.from(node.entries);
}

export interface TreeUpdate {
  root: string;
  /** For each changed chunk, its hash before the change (null for zeros). */
  previous: Map<number, string | null>;
}

/**
 * A tree of `count` chunks equal to the tree `root` (of the same `count`; ZERO_HASH for all zeros) with `changes`
 * applied. Only nodes on paths to changed chunks are read and written.
 */
export async function updateTree(
  root: string,
  count: number,
  changes: [number, string | null][],
  source: NodeSource,
  sink: NodeSink,
): Promise<TreeUpdate> {
  const previous = new Map<number, string | null>();
  const sorted = [...new Map(changes)].sort((a, b) => a[0] - b[0]); // the last change of an index wins
  const visit = async (level: number, k: number, hash: string, part: [number, string | null][]): Promise<string> => {
    if (part.length === 0) return hash;
    const entries = await nodeEntries(source, hash, level, entryCount(level, k, count));
    if (level === 0) {
      for (const [i, h] of part) {
        const at = i - k * FANOUT;
        previous.set(i, fromEntry(entries, at));
        toEntry(h).copy(entries, at * 32);
      }
    } else {
      const below = span(level - 1);
      let from = 0;
      while (from < part.length) {
        const j = Math.floor(((part[from] as [number, string | null])[0] - k * span(level)) / below);
        let to = from;
        while (to < part.length && Math.floor(((part[to] as [number, string | null])[0] - k * span(level)) / below) === j) to++;
        const child = await visit(level - 1, k * FANOUT + j, entries.toString('hex', j * 32, j * 32 + 32), part.slice(from, to));
        Buffer.from(child, 'hex').copy(entries, j * 32);
        from = to;
      }
    }
    if (entries.equals(Buffer.alloc(entries.length))) return ZERO_HASH;
    const bytes = encodeNode(level, entries);
    const h = sink.nameOf(bytes);
    sink.storeNode(h, bytes);
    return h;
  };
  if (count === 0) return { root: ZERO_HASH, previous };
  return { root: await visit(treeHeight(count), 0, root, sorted), previous };
}

/** The root of the tree of a list of chunk hashes, without storing anything (to compare a source with a replica). */
export async function treeRoot(hashes: (string | null)[], naming: BlobNaming): Promise<string> {
  const changes = hashes.flatMap((h, i): [number, string][] => (h === null ? [] : [[i, h]]));
  const none: NodeSource = { loadNode: () => Promise.reject(new Error('unreachable')) };
  return (await updateTree(ZERO_HASH, hashes.length, changes, none, { nameOf: (b) => blobName(b, naming), storeNode: () => undefined })).root;
}

/**
 * Calls `visit` for every non-zero chunk with index in [from, to), in order, reading only the nodes needed. A visit
 * that returns false stops the walk (a page of a listing is full).
 */
export async function forEachChunk(
  root: string,
  count: number,
  source: NodeSource,
  visit: (index: number, hash: string) => void | boolean | Promise<void | boolean>,
  from = 0,
  to = count,
): Promise<void> {
  let stopped = false;
  const walk = async (level: number, k: number, hash: string): Promise<void> => {
    const first = k * span(level);
    if (hash === ZERO_HASH || first >= to || first + span(level) <= from) return;
    const entries = await nodeEntries(source, hash, level, entryCount(level, k, count));
    const n = entries.length / 32;
    for (let j = 0; j < n && !stopped; j++) {
      if (level === 0) {
        const i = first + j;
        const h = fromEntry(entries, j);
        if (h !== null && i >= from && i < to && (await visit(i, h)) === false) stopped = true;
      } else {
        await walk(level - 1, k * FANOUT + j, entries.toString('hex', j * 32, j * 32 + 32));
      }
    }
  };
  if (count > 0) await walk(treeHeight(count), 0, root);
}

/** Every chunk hash of a tree as a list (null for zeros): for small disks, tests and resized disks. */
export async function listChunks(root: string, count: number, source: NodeSource): Promise<(string | null)[]> {
  const out = new Array<string | null>(count).fill(null);
  await forEachChunk(root, count, source, (i, h) => {
    out[i] = h;
  });
  return out;
}

/**
 * Every blob a tree references: `onNode` for each node, `onChunk` for each chunk hash. Subtrees whose node is in
 * `seen` are skipped, so walking many points that share most of their trees reads each node once.
 */
export async function collectBlobs(root: string, source: NodeSource, seen: Set<string>, onNode: (hash: string) => void, onChunk: (hash: string) => void): Promise<void> {
  const walk = async (hash: string): Promise<void> => {
    if (hash === ZERO_HASH || seen.has(hash)) return;
    seen.add(hash);
    onNode(hash);
    const node = decodeNode(await source.loadNode(hash), hash);
    for (let j = 0; j < node.entries.length / 32; j++) {
      const h = node.entries.toString('hex', j * 32, j * 32 + 32);
      if (h === ZERO_HASH) continue;
      if (node.level === 0) onChunk(h);
      else await walk(h);
    }
  };
  await walk(root);
}

/**
 * The chunk indexes where two trees differ, as sorted half-open ranges [start, end). Trees of the same chunk count
 * are compared by descending only into subtrees whose hashes differ; a resized disk is compared chunk by chunk.
 */
export async function diffTrees(a: { root: string; count: number }, b: { root: string; count: number }, source: NodeSource): Promise<[number, number][]> {
  const ranges: [number, number][] = [];
  const mark = (start: number, end: number) => {
    const last = ranges.at(-1);
    if (last && last[1] === start) last[1] = end;
    else ranges.push([start, end]);
  };
  if (a.count !== b.count) {
    const [x, y] = await Promise.all([listChunks(a.root, a.count, source), listChunks(b.root, b.count, source)]);
    for (let i = 0; i < Math.max(a.count, b.count); i++) if ((x[i] ?? null) !== (y[i] ?? null) || i >= Math.min(a.count, b.count)) mark(i, i + 1);
    return ranges;
  }
  const count = a.count;
  const walk = async (level: number, k: number, ha: string, hb: string): Promise<void> => {
    if (ha === hb) return;
    const n = entryCount(level, k, count);
    const [ea, eb] = await Promise.all([nodeEntries(source, ha, level, n), nodeEntries(source, hb, level, n)]);
    for (let j = 0; j < n; j++) {
      if (ea.compare(eb, j * 32, j * 32 + 32, j * 32, j * 32 + 32) === 0) continue;
      if (level === 0) mark(k * FANOUT + j, k * FANOUT + j + 1);
      else await walk(level - 1, k * FANOUT + j, ea.toString('hex', j * 32, j * 32 + 32), eb.toString('hex', j * 32, j * 32 + 32));
    }
  };
  if (count > 0) await walk(treeHeight(count), 0, a.root, b.root);
  return ranges;
}
