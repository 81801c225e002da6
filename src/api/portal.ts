import { existsSync } from 'node:fs';
import { join } from 'node:path';
import fastifyStatic from '@fastify/static';
import { packageRoot } from '../core/package-root.js';
import type { App } from './app.js';

/** Where `npm run build` puts the web portal (src/portal, built by Vite). */
export const portalDir = (): string => join(packageRoot(), 'dist', 'portal');

/**
 * The web portal at `/`: index.html and its hashed assets, public (the page holds no data; every call it makes to
 * /api/v1 carries the session token of its login). Its pages route by URL fragment (#/jobs), so the server only
 * ever serves these files.
 */
export async function registerPortal(app: App): Promise<void> {
  const root = portalDir();
  await app.register(fastifyStatic, { root, serve: false });
  const missing = { error: { code: 'not_found', message: 'the web portal is not built', hint: 'run `npm run build` (it builds src/portal into dist/portal)' } };
  const config = { permission: 'public' as const };
  app.get('/', { config, schema: { hide: true } }, async (_req, reply) =>
    existsSync(join(root, 'index.html')) ? reply.header('cache-control', 'no-cache').sendFile('index.html', { cacheControl: false }) : reply.code(404).send(missing));
  app.get('/assets/:file', { config, schema: { hide: true } }, async (req, reply) => {
    const { file } = req.params as { file: string };
    // Only the flat, hashed names Vite writes: nothing else under dist/portal (nor outside it) is reachable.
    if (!/^[\w-]+\.[\w.-]+$/.test(file) || file.includes('..')) return reply.code(404).send({ error: { code: 'not_found', message: `no portal asset '${file}'` } });
    // Asset names carry their content hash: cache them for good.
    return reply.sendFile(join('assets', file), { maxAge: 365 * 86400_000, immutable: true });
  });
}
