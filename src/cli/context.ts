import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { RefugeError } from '../core/errors.js';
import type { CredentialsFile } from '../api/vault-init.js';
import { ApiClient, DEFAULT_URL } from './client.js';
import { readSettings } from './settings.js';

export interface GlobalOptions {
  url: string;
  vault?: string;
  json?: boolean;
  token?: string;
  ca?: string;
  credentials?: string;
}

/** Where `refuge login` keeps the URL, CA and session token (REFUGE_CONFIG overrides). */
export const configPath = (): string => process.env.REFUGE_CONFIG ?? join(homedir(), '.config', 'refuge', 'credentials.json');

function readCredentials(path: string, explicit: boolean): Partial<CredentialsFile> {
  if (!explicit && !existsSync(path)) return {};
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Partial<CredentialsFile>;
  } catch (err) {
    throw RefugeError.wrap(err, `cannot read the credentials file ${path}`, 'invalid_argument');
  }
}

/**
 * The global options every command sees. Each setting comes from the first of: its flag (--url, --token, --ca,
 * --vault, --json), its environment variable (REFUGE_URL, REFUGE_TOKEN, REFUGE_CA, REFUGE_VAULT, REFUGE_OUTPUT),
 * the config file (settings.ts: url, vault, ca, credentials, output), the credentials file (--credentials /
 * REFUGE_CREDENTIALS, as written by `refuge vault init`), then the file `refuge login` wrote.
 */
export function globals(cmd: Command): GlobalOptions & { client: ApiClient } {
  const o = cmd.optsWithGlobals<GlobalOptions>();
  const settings = readSettings();
  const explicit = o.credentials ?? process.env.REFUGE_CREDENTIALS ?? settings.credentials;
  const creds = readCredentials(explicit ?? configPath(), explicit !== undefined);
  const url = o.url ?? process.env.REFUGE_URL ?? settings.url ?? creds.url ?? DEFAULT_URL;
  const vault = o.vault ?? process.env.REFUGE_VAULT ?? settings.vault;
  const token = o.token ?? process.env.REFUGE_TOKEN ?? creds.token;
  const caFile = o.ca ?? process.env.REFUGE_CA ?? settings.ca;
  const ca = caFile ? readCa(caFile) : creds.ca;
  const json = o.json ?? ((process.env.REFUGE_OUTPUT ?? settings.output) === 'json' ? true : undefined);
  const connection = { ...(token ? { token } : {}), ...(ca ? { ca } : {}) };
  return { ...o, url, ...(json ? { json } : {}), ...(vault ? { vault } : {}), client: new ApiClient(url, vault, connection) };
}

function readCa(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw RefugeError.wrap(err, `cannot read the CA file ${path}`, 'invalid_argument');
  }
}
