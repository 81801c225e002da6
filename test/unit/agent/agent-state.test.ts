import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ChunkHashes } from '../../../src/agent/chunk-hashes.js';
import { clearSentCommit, hashesAfter, loadSentCommit, saveSentCommit } from '../../../src/agent/sent-commit.js';
import { emptyState, loadState, saveState, type AgentState } from '../../../src/agent/state.js';

describe('agent state', () => {
  const remembered = { ...emptyState(), replicationId: 'r1', lastPointId: 'p2', lastPointAt: '2026-12-02T10:00:02.000Z', chunkSize: 65536 };

  it('survives a save and load, and a damaged file costs only a comparison (an empty state)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'agent-state-'));
    try {
      await saveState(dir, remembered);
      expect(await loadState(dir)).toEqual(remembered);
      // Hashes of a format-3 store (leaf-digest names) are remembered as such: another naming means comparing again.
      const leafNamed: AgentState = { ...remembered, naming: 'leaf16' };
      await saveState(dir, leafNamed);
      expect(await loadState(dir)).toEqual(leafNamed);
      await saveState(dir, remembered);
      const snapshot = await readFile(join(dir, 'agent-state.bin'));
      await writeFile(join(dir, 'agent-state.bin'), snapshot.subarray(0, 20));
      expect(await loadState(dir)).toEqual(emptyState());
      await writeFile(join(dir, 'agent-state.bin'), Buffer.from('not a state at all'));
      expect(await loadState(dir)).toEqual(emptyState());
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('saves a point of a large disk as its changes, replays them on load, and writes the whole state when it must', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'agent-state-'));
    const hash = (n: number) => createHash('sha256').update(String(n)).digest('hex');
    const hashesOf = (h: ChunkHashes) => Array.from({ length: h.length }, (_, i) => h.get(i));
    const size = async (f: string) => (await stat(join(dir, f)).catch(() => undefined))?.size;
    try {
      // 256 GiB of 256 KiB chunks, one in four holding data: 256 Ki records in the snapshot (9 MiB).
      const count = 1024 * 1024;
      const disk = new ChunkHashes(count);
      for (let i = 0; i < count; i += 4) disk.set(i, hash(i));
      let state: AgentState = { ...remembered, lastPointId: 'p1', disks: { d: disk } };
      await saveState(dir, state);
      expect(await size('agent-state.bin')).toBeGreaterThan(9 * 1024 * 1024);
      expect(await size('agent-state.log')).toBeUndefined();

      // Three points of a few changes each: a log line apiece, kilobytes, not the disk's 9 MiB.
      for (const [n, point] of ['p2', 'p3', 'p4'].entries()) {
        const changes: [number, string | null][] = [[n, hash(1000 + n)], [4 * (n + 1), null], [count - 1, hash(2000 + n)]];
        const after = state.disks.d?.clone() as ChunkHashes;
        for (const [i, h] of changes) after.set(i, h);
        const parentId = state.lastPointId;
        state = { ...state, lastPointId: point, lastPointAt: `2026-12-03T10:00:0${n}.000Z`, disks: { d: after } };
        await saveState(dir, state, { parentId, disks: [{ name: 'd', sizeBytes: count * 262144, changes }] });
      }
      expect(await size('agent-state.log')).toBeLessThan(2048);
      const loaded = await loadState(dir);
      expect(loaded.lastPointId).toBe('p4');
      expect(loaded.lastPointAt).toBe('2026-12-03T10:00:02.000Z');
      expect(hashesOf(loaded.disks.d as ChunkHashes)).toEqual(hashesOf(state.disks.d as ChunkHashes));

      // A crash tore the last line: the state is the point before it.
      const log = await readFile(join(dir, 'agent-state.log'), 'utf8');
      await writeFile(join(dir, 'agent-state.log'), log.slice(0, log.length - 20));
      const torn = await loadState(dir);
      expect(torn.lastPointId).toBe('p3');
      expect(torn.disks.d?.get(2)).toBeNull(); // p4's changes are not there
      expect(torn.disks.d?.get(1)).toBe(hash(1001));
      // The next point follows p3 and must survive a restart: not appended after the torn fragment, saved whole.
      const again = torn.disks.d?.clone() as ChunkHashes;
      again.set(7, hash(3000));
      await saveState(dir, { ...torn, lastPointId: 'p4b', disks: { d: again } }, { parentId: 'p3', disks: [{ name: 'd', sizeBytes: count * 262144, changes: [[7, hash(3000)]] }] });
      expect(await size('agent-state.log')).toBeUndefined();
      const afterTorn = await loadState(dir);
      expect(afterTorn.lastPointId).toBe('p4b');
      expect(afterTorn.disks.d?.get(7)).toBe(hash(3000));
      state = afterTorn;

      // A point that does not follow the saved one (its parent is another) is saved whole, and the log removed.
      state = { ...state, lastPointId: 'p9', disks: { d: state.disks.d as ChunkHashes } };
      await saveState(dir, state, { parentId: 'p7', disks: [{ name: 'd', sizeBytes: count * 262144, changes: [] }] });
      expect(await size('agent-state.log')).toBeUndefined();
      expect((await loadState(dir)).lastPointId).toBe('p9');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('skips log lines left from before the snapshot, and saves whole next; reads the former agent-state.json', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'agent-state-'));
    try {
      const d = ChunkHashes.fromList(['a'.repeat(64), null, null]);
      await saveState(dir, { ...remembered, lastPointId: 'p5', disks: { d } });
      // A crash between writing the snapshot of p5 and removing the log: p4's line (parent p3) is still there.
      await writeFile(join(dir, 'agent-state.log'), `${JSON.stringify({ parent: 'p3', ...remembered, lastPointId: 'p4', disks: [{ name: 'd', length: 3, changes: [[1, 'b'.repeat(64)]] }] })}\n`);
      const loaded = await loadState(dir);
      expect(loaded.lastPointId).toBe('p5');
      expect(loaded.disks.d?.get(1)).toBeNull();
      await saveState(dir, { ...loaded, lastPointId: 'p6' }, { parentId: 'p5', disks: [{ name: 'd', sizeBytes: 12, changes: [] }] });
      expect(await readFile(join(dir, 'agent-state.log'), 'utf8').catch(() => 'gone')).toBe('gone'); // saved whole
      expect((await loadState(dir)).lastPointId).toBe('p6');

      const old = await mkdtemp(join(tmpdir(), 'agent-state-'));
      await writeFile(join(old, 'agent-state.json'), JSON.stringify({ ...remembered, disks: { d } }));
      const legacy = await loadState(old);
      expect(legacy.lastPointId).toBe('p2');
      expect(legacy.disks.d?.get(0)).toBe('a'.repeat(64));
      await saveState(old, legacy);
      expect(await readFile(join(old, 'agent-state.json'), 'utf8').catch(() => 'gone')).toBe('gone');
      await rm(old, { recursive: true, force: true });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('keeps a sent commit until it is cleared; a damaged file is no sent commit', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'agent-sent-'));
    try {
      const sent = { replicationId: 'r1', chunkSize: 4, request: { parentId: 'p1', capturedAt: '2026-12-02T10:00:03.000Z', consistency: 'crash' as const, disks: [{ name: 'd', sizeBytes: 8, changes: [[1, 'b'.repeat(64)] as [number, string]] }] } };
      await saveSentCommit(dir, sent);
      expect(await loadSentCommit(dir)).toEqual(sent);
      await clearSentCommit(dir);
      expect(await loadSentCommit(dir)).toBeUndefined();
      await writeFile(join(dir, 'agent-commit.json'), '{"replicationId": "r1"');
      expect(await loadSentCommit(dir)).toBeUndefined();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("a sent commit's hashes are its parent's with its changes, unless a disk's parent hashes are unknown or of another size", () => {
    const parent = { d: ChunkHashes.fromList(['a'.repeat(64), null]) };
    const request = { parentId: 'p1', capturedAt: '2026-12-02T10:00:03.000Z', consistency: 'crash' as const, disks: [{ name: 'd', sizeBytes: 8, changes: [[1, 'b'.repeat(64)], [0, null]] as [number, string | null][] }] };
    const after = hashesAfter(parent, request, 4);
    expect([after?.d?.get(0), after?.d?.get(1)]).toEqual([null, 'b'.repeat(64)]);
    expect(parent.d.get(0)).toBe('a'.repeat(64)); // the parent's own hashes are left as they were
    expect(hashesAfter({}, request, 4)).toBeUndefined();
    expect(hashesAfter(parent, { ...request, disks: [{ ...request.disks[0], sizeBytes: 12 } as (typeof request.disks)[number]] }, 4)).toBeUndefined(); // resized
  });
});
