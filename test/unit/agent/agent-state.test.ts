import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
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
});
