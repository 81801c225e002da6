import type { Command } from 'commander';
import { programWithGlobals } from './base-program.js';
import { registerAgentCommand } from './commands/agent.js';

/**
 * `refuge agent ...` alone: the agent runs for months beside the VMs it protects, and loading every other command
 * (the vault server, its database drivers, the store and the API client commands) cost it ~37 MiB of memory for
 * code it never runs (P11, docs/benchmarks.md).
 */
export function buildAgentProgram(): Command {
  const program = programWithGlobals();
  registerAgentCommand(program);
  return program;
}
