// Writes docs/api.md from the vault's OpenAPI document (`npm run docs:api`).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openApiMarkdown, type OpenApiDoc } from '../src/api/openapi-markdown.js';
import { assembleVault } from '../src/api/server.js';
import { silentLogger } from '../src/core/log.js';

export async function apiMarkdown(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'refuge-api-docs-'));
  const vault = await assembleVault({ dataDir: dir, insecureHttp: true, monitorIntervalMs: 0, log: silentLogger });
  try {
    await vault.app.ready();
    const permissions = new Map(vault.app.routeTable.map((r) => [`${r.method} ${r.url}`, r.permission]));
    return openApiMarkdown(vault.app.swagger() as unknown as OpenApiDoc, permissions);
  } finally {
    await vault.close();
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === import.meta.filename) {
  await writeFile(join(import.meta.dirname, '..', 'docs', 'api.md'), await apiMarkdown());
}
