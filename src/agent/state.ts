import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../core/atomic-file.js';
import { ChunkHashes } from './chunk-hashes.js';

/**
 * What the agent remembers between points (and across restarts): the last point it committed and the chunk
 * hashes of each disk in that point, so the next scan ships only chunks whose hash changed. Losing this file
 * costs one full hash comparison against the store's latest point, never a full copy.
 */
export interface AgentState {
  replicationId: string | null;
  lastPointId: string | null;
  lastPointAt: string | null;
  chunkSize: number;
  disks: Record<string, ChunkHashes>;
}

export const emptyState = (): AgentState => ({ replicationId: null, lastPointId: null, lastPointAt: null, chunkSize: 0, disks: {} });

export async function loadState(dir: string): Promise<AgentState> {
  const text = await readFile(join(dir, 'agent-state.json'), 'utf8').catch(() => '');
  if (!text) return emptyState();
  try {
    const saved = JSON.parse(text) as Partial<Omit<AgentState, 'disks'>> & { disks?: Record<string, unknown> };
    const disks: Record<string, ChunkHashes> = {};
    for (const [name, json] of Object.entries(saved.disks ?? {})) {
      const hashes = ChunkHashes.fromJSON(json);
      if (hashes) disks[name] = hashes; // a disk missing here is compared against the store or listed whole
    }
    return { ...emptyState(), ...saved, disks };
  } catch {
    return emptyState(); // a damaged state file only costs a hash comparison
  }
}

export function saveState(dir: string, state: AgentState): Promise<void> {
  return writeFileAtomic(join(dir, 'agent-state.json'), JSON.stringify(state));
}
