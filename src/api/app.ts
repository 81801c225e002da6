import Fastify, { LogController, type FastifyReply } from 'fastify';
import swagger from '@fastify/swagger';
import type { Logger } from '../core/log.js';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { RefugeError } from '../core/errors.js';
import { MAX_REPLICATION_CHUNK_SIZE } from '../protocol/chunk-encoding.js';
import { replicatorRoutes } from '../replicator/routes.js';
import type { AppDeps } from './deps.js';
import { errorHandler } from './errors.js';
import { configurationRoutes } from './routes/configuration.js';
import { replicationRoutes } from './routes/replications.js';
import { jobRoutes } from './routes/jobs.js';
import { agentRoutes } from './routes/agents.js';
import { groupRoutes } from './routes/groups.js';
import { accessRoutes } from './routes/access.js';
import { monitoringRoutes } from './routes/monitoring.js';
import { readinessRoutes } from './routes/readiness.js';
import { policyMachineRoutes } from './routes/policies-machines.js';
import { topologyRoutes } from './routes/topology.js';
import { registerAuth } from './auth.js';
import { replicatorRoutes as standaloneReplicatorRoutes } from './routes/replicators.js';
import { registerPortal } from './portal.js';
import { planRoutes } from './routes/plans.js';
import { drillRoutes } from './routes/drills.js';

function createFastify(log: Logger, tls: AppDeps['tls'], issuingCa: string) {
  return Fastify({
    loggerInstance: log,
    // The chain includes the vault CA, so a registering agent can check it against the fingerprint it was given.
    // Client certificates are asked for, not required: users authenticate with tokens; the agent routes check the
    // certificate themselves (auth.ts) to answer a clear 401 instead of a bare TLS alert.
    ...(tls ? { https: { cert: tls.certPem.includes(tls.caPem.trim()) ? tls.certPem : `${tls.certPem.trim()}\n${tls.caPem.trim()}\n`, key: tls.keyPem, ca: issuingCa, requestCert: true, rejectUnauthorized: false } } : {}),
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1024 * 1024,
    // Bad URLs and over-long path segments are refused by the router before any route: same error body as ours.
    frameworkErrors: (err, _req, reply: FastifyReply) => {
      const tooLong = err.code === 'FST_ERR_MAX_PARAM_LENGTH';
      void reply.code(tooLong ? 414 : 400).send({ error: { code: 'invalid_argument', message: tooLong ? 'a path segment is too long (at most 100 characters)' : 'the URL is not valid' } });
    },
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
  const app = createFastify(deps.log, deps.tls, deps.issuingCa.certPem);

  app.setErrorHandler(errorHandler(deps.log));
  app.setNotFoundHandler((req, reply) => {
    const e = new RefugeError('not_found', `no route ${req.method} ${req.url.split('?')[0]}`, { hint: 'the API lives under /api/v1' });
    return reply.code(404).send({ error: { code: e.code, message: e.message, hint: e.hint } });
  });

  registerAuth(app, {
    users: deps.users,
    identities: deps.identities,
    audit: deps.audit,
    log: deps.log,
    vaultIdByName: async (name) => (await deps.repos.vaults.get(name).catch(() => undefined))?.id,
    replicationOwner: async (id) => {
      const r = await deps.repos.replications.byId(id).catch(() => undefined);
      return r && { vaultId: r.vaultId, machineId: r.machineId, machineName: (await deps.repos.machines.byId(r.machineId)).name };
    },
  });
  // OpenAPI, generated from the routes' schemas; served (to any token holder) at /api/docs.
  await app.register(swagger, {
    openapi: {
      info: { title: 'Refuge vault API', version: '1', description: 'Self-hosted site recovery: vaults, sites, machines, replications, operations as jobs, readiness, alerts.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });
  app.get('/api/docs', { schema: { hide: true } }, async () => app.swagger());
  app.get('/metrics', { schema: { hide: true } }, async (_req, reply) => reply.type(deps.metrics.registry.contentType).send(await deps.metrics.text()));

  app.get('/api/v1/health', { config: { permission: 'public' } }, async () => ({ status: 'ok', time: new Date().toISOString() }));
  await app.register(accessRoutes(deps), { prefix: '/api/v1' });
  await app.register(configurationRoutes(deps), { prefix: '/api/v1' });
  await app.register(policyMachineRoutes(deps), { prefix: '/api/v1' });
  await app.register(topologyRoutes(deps), { prefix: '/api/v1' });
  await app.register(replicationRoutes(deps), { prefix: '/api/v1' });
  await app.register(jobRoutes(deps), { prefix: '/api/v1' });
  await app.register(agentRoutes(deps), { prefix: '/api/v1' });
  await app.register(groupRoutes(deps), { prefix: '/api/v1' });
  await app.register(monitoringRoutes(deps), { prefix: '/api/v1' });
  await app.register(readinessRoutes(deps), { prefix: '/api/v1' });
  await app.register(standaloneReplicatorRoutes(deps), { prefix: '/api/v1' });
  await app.register(planRoutes(deps), { prefix: '/api/v1' });
  await app.register(drillRoutes(deps), { prefix: '/api/v1' });
  await app.register(replicatorRoutes(deps.replicator, MAX_REPLICATION_CHUNK_SIZE), { prefix: '/replicator/v1' });
  await registerPortal(app);
  return app;
}
