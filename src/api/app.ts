import Fastify, { LogController } from 'fastify';
import type { Logger } from '../core/log.js';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { RefugeError } from '../core/errors.js';
import { DEFAULT_CHUNK_SIZE } from '../store/chunks.js';
import { replicatorRoutes } from '../replicator/routes.js';
import type { AppDeps } from './deps.js';
import { errorHandler } from './errors.js';
import { configurationRoutes } from './routes/configuration.js';
import { replicationRoutes } from './routes/replications.js';
import { jobRoutes } from './routes/jobs.js';
import { agentRoutes } from './routes/agents.js';
import { replicatorRoutes as standaloneReplicatorRoutes } from './routes/replicators.js';


function createFastify(log: Logger) {
  return Fastify({
    loggerInstance: log,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1024 * 1024,
    ajv: {
      // Reject rather than repair: unknown fields and wrong types are the caller's error, said precisely.
      customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: true, allErrors: false },
    },
  }).withTypeProvider<TypeBoxTypeProvider>();
}

export type App = ReturnType<typeof createFastify>;

/**
 * Builds the vault's HTTP server: the REST API under /api/v1 and the in-process replicator under /replicator/v1.
 * It never listens (server.ts does), so tests drive it with `app.inject()`.
 */
export async function buildApp(deps: AppDeps): Promise<App> {
  const app = createFastify(deps.log);

  app.setErrorHandler(errorHandler(deps.log));
  app.setNotFoundHandler((req, reply) => {
    const e = new RefugeError('not_found', `no route ${req.method} ${req.url.split('?')[0]}`, { hint: 'the API lives under /api/v1' });
    return reply.code(404).send({ error: { code: e.code, message: e.message, hint: e.hint } });
  });

  app.get('/api/v1/health', async () => ({ status: 'ok', time: new Date().toISOString() }));
  await app.register(configurationRoutes(deps), { prefix: '/api/v1' });
  await app.register(replicationRoutes(deps), { prefix: '/api/v1' });
  await app.register(jobRoutes(deps), { prefix: '/api/v1' });
  await app.register(agentRoutes(deps), { prefix: '/api/v1' });
  await app.register(standaloneReplicatorRoutes(deps), { prefix: '/api/v1' });
  await app.register(replicatorRoutes(deps.replicator, DEFAULT_CHUNK_SIZE * 4), { prefix: '/replicator/v1' });
  return app;
}
