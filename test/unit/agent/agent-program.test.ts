import { describe, expect, it } from 'vitest';
import { buildAgentProgram } from '../../../src/cli/agent-program.js';
import { commandWord } from '../../../src/cli/base-program.js';

describe('refuge agent loads only its own command', () => {
  it('finds the command word after the global options and their values', () => {
    const argv = (...args: string[]) => ['node', 'refuge', ...args];
    expect(commandWord(argv('agent', '--site', 'primary'))).toBe('agent');
    expect(commandWord(argv('--credentials', 'agent', '--vault', 'demo', 'agent', 'register'))).toBe('agent');
    expect(commandWord(argv('--json', '--url=https://v:8443', 'vault', 'init'))).toBe('vault');
    expect(commandWord(argv('--url', 'agent', 'machine', 'list'))).toBe('machine');
    expect(commandWord(argv('--help'))).toBeUndefined();
  });

  it('has the agent command with its registration subcommands and the global options', () => {
    const program = buildAgentProgram();
    const agent = program.commands.find((c) => c.name() === 'agent');
    expect(program.commands.map((c) => c.name())).toEqual(['agent']);
    expect(agent?.commands.map((c) => c.name()).sort()).toEqual(['key', 'register']);
    expect(program.options.map((o) => o.long)).toEqual(['--version', '--url', '--vault', '--json', '--token', '--ca', '--credentials']);
  });
});
