import type { Command } from 'commander';
import { programWithGlobals } from './base-program.js';
import { registerAgentCommand } from './commands/agent.js';
import { registerAccessCommands } from './commands/access.js';
import { registerMonitoringCommands } from './commands/monitoring.js';
import { registerConfigurationCommands } from './commands/configuration.js';
import { registerQuickstartCommand } from './commands/quickstart.js';
import { registerReplicationCommands } from './commands/replication.js';
import { registerReplicatorCommand } from './commands/replicator.js';
import { registerStoreCommands } from './commands/store.js';
import { registerVaultCommand } from './commands/vault.js';
import { registerTopologyCommands } from './commands/topology.js';
import { registerConfigurationMoreCommands } from './commands/configuration-more.js';
import { registerMonitoringMoreCommands } from './commands/monitoring-more.js';
import { registerSettingsCommands } from './commands/settings.js';
import { registerPlanCommands } from './commands/plan.js';
import { registerDrillCommands } from './commands/drill.js';

/** `refuge`: one command for the vault server, the agent, and every API operation. */
export function buildProgram(): Command {
  const program = programWithGlobals();
  const vault = registerVaultCommand(program);
  registerConfigurationCommands(program, vault);
  registerReplicationCommands(program);
  registerAgentCommand(program);
  registerReplicatorCommand(program);
  registerStoreCommands(program);
  registerAccessCommands(program);
  registerMonitoringCommands(program);
  registerQuickstartCommand(program);
  // Plans first: the configuration commands below add to the `plan` group only what it lacks.
  registerPlanCommands(program);
  registerDrillCommands(program);
  registerConfigurationMoreCommands(program);
  registerMonitoringMoreCommands(program);
  registerTopologyCommands(program);
  // Last: it completes every command registered before it.
  registerSettingsCommands(program);
  return program;
}
