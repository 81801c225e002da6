import { Command } from 'commander';
import { DEFAULT_URL } from './client.js';

/**
 * The `refuge` command with its global options and no subcommands: program.ts adds every command, agent-program.ts
 * only the agent's (main.ts picks one by the command word).
 */
export function programWithGlobals(): Command {
  return new Command('refuge')
    .description('Refuge: self-hosted site recovery for qemu/KVM VMs and Linux servers')
    .version('0.1.0')
    .option('--url <url>', `vault URL (env REFUGE_URL, default ${DEFAULT_URL})`)
    .option('--vault <name>', 'vault to act on (env REFUGE_VAULT; default: the only vault)')
    .option('--json', 'print JSON instead of tables (env REFUGE_OUTPUT=json)')
    .option('--token <token>', 'API token (env REFUGE_TOKEN; default: from the credentials file)')
    .option('--ca <file>', "PEM file of the vault's CA to trust (env REFUGE_CA)")
    .option('--credentials <file>', 'credentials file written by `refuge vault init` or `refuge login` (env REFUGE_CREDENTIALS)')
    .showHelpAfterError()
    .exitOverride();
}

/** Global options that take a value (`--url X`), so the command word is found after them. */
const VALUED = new Set(['--url', '--vault', '--token', '--ca', '--credentials']);

/** The subcommand word of `argv` (process.argv: node, script, then the arguments), or undefined. */
export function commandWord(argv: readonly string[]): string | undefined {
  for (let i = 2; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (VALUED.has(arg)) i++;
    else if (!arg.startsWith('-')) return arg;
  }
  return undefined;
}
