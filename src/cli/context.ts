import type { Command } from 'commander';
import { ApiClient, DEFAULT_URL } from './client.js';

export interface GlobalOptions {
  url: string;
  vault?: string;
  json?: boolean;
}

/** The global options every command sees (--url, --vault, --json, with REFUGE_* environment fallbacks). */
export function globals(cmd: Command): GlobalOptions & { client: ApiClient } {
  const o = cmd.optsWithGlobals<GlobalOptions>();
  const url = o.url ?? process.env.REFUGE_URL ?? DEFAULT_URL;
  const vault = o.vault ?? process.env.REFUGE_VAULT;
  return { ...o, url, ...(vault ? { vault } : {}), client: new ApiClient(url, vault) };
}
