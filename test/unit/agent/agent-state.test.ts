import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ChunkHashes } from '../../../src/agent/chunk-hashes.js';
import { clearSentCommit, hashesAfter, loadSentCommit, saveSentCommit } from '../../../src/agent/sent-commit.js';
import { emptyState, loadState, saveState } from '../../../src/agent/state.js';

describe('agent state', () => {
  const remembered = { ...emptyState(), replicationId: 'r1', lastPointId: 'p2', lastPointAt: '2026-12-02T10:00:02.000Z', chunkSize: 65536 };

  it('survives a save and load, and a damaged file costs only a comparison (an empty state)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'agent-state-'));
    try {
      await saveState(dir, remembered);
      expect(await loadState(dir)).toEqual(remembered);
      await writeFile(join(dir, 'agent-state.json'), '{"lastPointId": "p2", ');
      expect(await loadState(dir)).toEqual(emptyState());
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
