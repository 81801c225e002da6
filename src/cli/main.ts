import { CommanderError } from 'commander';
import { RefugeError } from '../core/errors.js';
import { commandWord } from './base-program.js';

async function main(): Promise<void> {
  try {
    // The agent loads only its own command (agent-program.ts); everything else loads the whole program.
    const program = commandWord(process.argv) === 'agent' ? (await import('./agent-program.js')).buildAgentProgram() : (await import('./program.js')).buildProgram();
    await program.parseAsync(process.argv);
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
