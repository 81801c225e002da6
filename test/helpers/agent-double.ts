import { requestJson } from '../../src/core/http-client.js';
import { chunkHash } from './chunk-name.js';
import { CHUNK } from './test-vault.js';

/** What the vault tells a machine's agent in its heartbeat answer. */
export interface AgentInstructions {
  mode: string;
  latestPointId: string | null;
  resyncAfter?: string;
  cutAfter?: string;
}

interface Vault {
  url: string;
  connection: { token?: string; ca?: string };
  api: <T>(method: string, path: string, body?: unknown) => Promise<T>;
}

/**
 * A machine's agent played over the vault's real API, for tests whose machines run on a fake fabric: heartbeats
 * (where the vault asks for a cut, a resync or a stop) and points of a disk committed through the replicator's
 * endpoints, its non-zero chunks uploaded first, as an agent does.
 */
export function agentDouble(v: Vault, vault = 'demo') {
  const heartbeat = async (machine: string, site: string) =>
    (await v.api<{ replication: AgentInstructions }>('POST', `/vaults/${vault}/agents/${machine}/heartbeat`, { agentVersion: '0.3.0', site })).replication;

  const commit = async (machine: string, disk: Buffer, parentId: string | null): Promise<string> => {
    const { id } = await v.api<{ id: string }>('GET', `/vaults/${vault}/replications/${machine}`);
    const changes: [number, string | null][] = [];
    for (let c = 0; c < disk.length / CHUNK; c++) {
      const data = disk.subarray(c * CHUNK, (c + 1) * CHUNK);
      const hash = data.every((b) => b === 0) ? null : chunkHash(data);
      if (hash) await requestJson('PUT', `${v.url}/replicator/v1/replications/${id}/chunks/${hash}`, { connection: v.connection, bytes: data });
      changes.push([c, hash]);
    }
    const r = await requestJson<{ pointId: string }>('POST', `${v.url}/replicator/v1/replications/${id}/points`, {
      connection: v.connection,
      body: { parentId, capturedAt: new Date().toISOString(), consistency: 'crash', disks: [{ name: 'disk0', sizeBytes: disk.length, changes }] },
    });
    return r.pointId;
  };

  /** Heartbeats from `site` until the vault's answer `asks` (at most ~20 s), then commits `disk` on its latest point. */
  const shipWhen = async (machine: string, site: string, asks: (i: AgentInstructions) => boolean, disk: Buffer): Promise<string> => {
    let answer = await heartbeat(machine, site);
    for (let i = 0; i < 400 && !asks(answer); i++) {
      await new Promise((r) => setTimeout(r, 50));
      answer = await heartbeat(machine, site);
    }
    if (!asks(answer)) throw new Error(`the vault never asked ${machine}'s agent at ${site} for a point: ${JSON.stringify(answer)}`);
    return commit(machine, disk, answer.latestPointId);
  };

  return { heartbeat, commit, shipWhen };
}
