import { CommanderError } from 'commander';
import { buildProgram } from '../../src/cli/program.js';
import { RefugeError } from '../../src/core/errors.js';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `refuge ARGS` in this process (the program main.ts runs, its output captured): a few milliseconds where a
 * new node process takes a second, so a test can call every command. Exit codes and messages as main.ts sets them.
 */
export async function runCli(args: string[]): Promise<CliRun> {
  let stdout = '';
  let stderr = '';
  const out = process.stdout.write.bind(process.stdout);
  const err = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((chunk: string | Uint8Array) => ((stdout += String(chunk)), true));
  process.stderr.write = ((chunk: string | Uint8Array) => ((stderr += String(chunk)), true));
  let code = 0;
  try {
    await buildProgram().parseAsync(['node', 'refuge', ...args]);
    code = typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    code = e instanceof CommanderError ? e.exitCode : 1;
    const r = e instanceof RefugeError ? e : RefugeError.wrap(e, 'unexpected failure');
    if (!(e instanceof CommanderError)) stderr += `refuge: ${r.message}\n${r.hint ? `hint: ${r.hint}\n` : ''}`;
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
    process.exitCode = undefined;
  }
  return { code, stdout, stderr };
}
