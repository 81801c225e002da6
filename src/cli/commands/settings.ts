import type { Command } from 'commander';
import { RefugeError } from '../../core/errors.js';
import { completionScript } from '../completion.js';
import { globals } from '../context.js';
import { done, printFields, printJson } from '../output.js';
import { SETTING_KEYS, checkSetting, readSettings, settingsPath, writeSettings } from '../settings.js';

/** `refuge config show|set|unset` (the config file) and `refuge completion bash|zsh`. */
export function registerSettingsCommands(program: Command): void {
  const config = program.command('config').description(`defaults for the global options, kept in the config file (${SETTING_KEYS.join(', ')})`);
  config.command('show').description('the config file and the settings in effect (flags > environment > config file > credentials)')
    .action(async (_o, cmd: Command) => {
      const g = globals(cmd);
      const view = { file: settingsPath(), saved: readSettings(), effective: { url: g.url, vault: g.vault ?? null, output: g.json ? 'json' : 'table', token: g.client.connection.token ? '(set)' : null, ca: g.client.connection.ca ? '(set)' : null } };
      if (g.json) printJson(view);
      else printFields(view);
    });
  config.command('set <key> <value>').description(`save a default: ${SETTING_KEYS.join(', ')}`)
    .action(async (key: string, value: string, _o, cmd: Command) => {
      checkSetting(key, value);
      const settings = { ...readSettings(), [key]: value };
      await writeSettings(settings);
      done(globals(cmd).json, { file: settingsPath(), settings }, `${key} = ${value} (in ${settingsPath()})`);
    });
  config.command('unset <key>').description('remove a saved default').action(async (key: string, _o, cmd: Command) => {
    checkSetting(key, key === 'output' ? 'table' : key === 'url' ? 'https://' : '');
    const { [key]: _removed, ...settings } = readSettings();
    await writeSettings(settings);
    done(globals(cmd).json, { file: settingsPath(), settings }, `${key} removed (from ${settingsPath()})`);
  });

  program.command('completion <shell>').description('print a shell completion script: bash or zsh (e.g. source <(refuge completion bash))')
    .action((shell: string) => {
      if (shell !== 'bash' && shell !== 'zsh') throw new RefugeError('invalid_argument', `no completion for '${shell}'`, { hint: 'refuge completion bash, or refuge completion zsh' });
      process.stdout.write(completionScript(program, shell));
    });
}
