import { Command, CommanderError } from 'commander';
import { RefugeError } from '../core/errors.js';
import { DEFAULT_URL } from './client.js';
import { registerAgentCommand } from './commands/agent.js';
import { registerConfigurationCommands } from './commands/configuration.js';
import { registerQuickstartCommand } from './commands/quickstart.js';
import { registerReplicationCommands } from './commands/replication.js';
import { registerReplicatorCommand } from './commands/replicator.js';
import { registerStoreCommands } from './commands/store.js';
import { registerVaultCommand } from './commands/vault.js';

/** `refuge`: one command for the vault server, the agent, and every API operation. */
export function buildProgram(): Command {
  const program = new Command('refuge')
    .description('Refuge: self-hosted site recovery for qemu/KVM VMs and Linux servers')
    .version('0.1.0')
    .option('--url <url>', `vault URL (env REFUGE_URL, default ${DEFAULT_URL})`)
    .option('--vault <name>', 'vault to act on (env REFUGE_VAULT; default: the only vault)')
    .option('--json', 'print JSON instead of tables')
    .showHelpAfterError()
    .exitOverride();
  const vault = registerVaultCommand(program);
  registerConfigurationCommands(program, vault);
  registerReplicationCommands(program);
  registerAgentCommand(program);
  registerReplicatorCommand(program);
  registerStoreCommands(program);
  registerQuickstartCommand(program);
  return program;
}

async function main(): Promise<void> {
  try {
    await buildProgram().parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode;
      return;
    }
    const e = err instanceof RefugeError ? err : RefugeError.wrap(err, 'unexpected failure');
    process.stderr.write(`refuge: ${e.message}\n`);
    if (e.hint) process.stderr.write(`hint: ${e.hint}\n`);
    const allowed = e.details.allowedOperations;
    if (Array.isArray(allowed)) process.stderr.write(`allowed operations now: ${allowed.join(', ') || 'none'}\n`);
    if (e.code === 'internal' && e.cause) process.stderr.write(`${(e.cause as Error).stack ?? ''}\n`);
    process.exitCode = 1;
  }
}

await main();
