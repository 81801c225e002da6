import { CommanderError } from 'commander';
import { RefugeError } from '../core/errors.js';
import { buildProgram } from './program.js';

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
