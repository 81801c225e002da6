import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { RefugeError } from '../core/errors.js';

/**
 * The CLI's config file (JSON): defaults for the global options, below flags and environment variables.
 * Format: { "url": "https://vault:7443", "vault": "prod", "ca": "/path/ca.pem", "credentials": "/path/creds.json",
 * "output": "table" | "json" }. Location: REFUGE_CONFIG_FILE, else ~/.config/refuge/config.json.
 */
export interface Settings {
  url?: string;
  vault?: string;
  ca?: string;
  credentials?: string;
  output?: 'table' | 'json';
}

export const SETTING_KEYS = ['url', 'vault', 'ca', 'credentials', 'output'] as const;
export type SettingKey = (typeof SETTING_KEYS)[number];

export const settingsPath = (): string => process.env.REFUGE_CONFIG_FILE ?? join(homedir(), '.config', 'refuge', 'config.json');

export function readSettings(path = settingsPath()): Settings {
  if (!existsSync(path)) return {};
  try {
    const parsed = JSON.parse(readFileSync(path, 'utf8')) as unknown;
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not a JSON object');
    const unknown = Object.keys(parsed).filter((k) => !(SETTING_KEYS as readonly string[]).includes(k));
    if (unknown.length > 0) throw new Error(`unknown setting ${unknown.map((k) => `'${k}'`).join(', ')} (known: ${SETTING_KEYS.join(', ')})`);
    return parsed;
  } catch (err) {
    throw new RefugeError('invalid_argument', `cannot read the config file ${path}: ${(err as Error).message}`, { hint: 'fix or remove it; `refuge config show` prints what is in effect' });
  }
}

export function checkSetting(key: string, value: string): asserts key is SettingKey {
  if (!(SETTING_KEYS as readonly string[]).includes(key)) throw new RefugeError('invalid_argument', `no setting '${key}'`, { hint: `settings: ${SETTING_KEYS.join(', ')}` });
  if (key === 'output' && value !== 'table' && value !== 'json') throw new RefugeError('invalid_argument', `output is 'table' or 'json', not '${value}'`);
  if (key === 'url' && !/^https?:\/\//.test(value)) throw new RefugeError('invalid_argument', `url '${value}' does not start with https:// or http://`);
}

export async function writeSettings(settings: Settings, path = settingsPath()): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeFile(path, JSON.stringify(settings, null, 2) + '\n', { mode: 0o600 });
}
