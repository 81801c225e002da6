import os from 'node:os';
import type { HostFacts } from '../protocol/schemas.js';

/** The host the agent runs on, as its heartbeats report it (the vault keeps it on the machine record). */
export function hostFacts(agentVersion: string, disks: { name: string; sizeBytes: number }[]): HostFacts {
  const cpus = os.cpus();
  return {
    os: `${os.type()} ${os.version()}`.slice(0, 200),
    kernel: os.release().slice(0, 200),
    arch: os.arch(),
    cpuModel: (cpus[0]?.model ?? 'unknown').trim().slice(0, 200) || 'unknown',
    cpus: Math.max(1, os.availableParallelism()),
    memoryBytes: os.totalmem(),
    agentVersion,
    disks: disks.map((d) => ({ name: d.name, sizeBytes: d.sizeBytes })),
  };
}
