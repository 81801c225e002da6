import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { RefugeError } from '../../core/errors.js';
import type { Replication } from '../../vault/model.js';
import { OPERATIONS } from '../../vault/replication-state.js';
import type { AppDeps } from '../deps.js';
import { pointView, replicationView } from '../views.js';
import { Id, Name, VaultParams, named } from './params.js';

/** Replications: enable, inspect, list points, and the operations (answered 202 with the job that runs them). */
export function replicationRoutes(deps: AppDeps): FastifyPluginAsync {
  const { repos } = deps;

  const view = async (r: Replication) => {
    const [machine, policy, latest, sites] = await Promise.all([
      repos.machines.byId(r.machineId),
      repos.policies.byId(r.policyId),
      repos.replications.latestPoint(r.id),
      repos.sites.list(r.vaultId),
    ]);
    return replicationView(r, { machine, policy, latest, sites: new Map(sites.map((s) => [s.id, s.name])) });
  };

  return async (fastify) => {
    const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
    const RepParams = named('replication');

    app.get('/vaults/:vault/replications', { schema: { params: VaultParams } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      return { items: await Promise.all((await repos.replications.list(v.id)).map(view)) };
    });

    app.post('/vaults/:vault/replications', {
      schema: {
        params: VaultParams,
        body: Type.Object({ machine: Name, policy: Name, targetSite: Name }, { additionalProperties: false }),
      },
    }, async (req, reply) => {
      const v = await repos.vaults.get(req.params.vault);
      const machine = await repos.machines.get(v.id, req.body.machine);
      const policy = await repos.policies.get(v.id, req.body.policy);
      const target = await repos.sites.get(v.id, req.body.targetSite);
      if (target.id === machine.siteId) {
        throw new RefugeError('invalid_argument', `machine '${machine.name}' already runs at site '${target.name}'; choose another target site`, {
          details: { field: '/body/targetSite' },
        });
      }
      const rep = await repos.replications.create({
        vaultId: v.id,
        name: machine.name,
        machineId: machine.id,
        policyId: policy.id,
        sourceSiteId: machine.siteId,
        targetSiteId: target.id,
      });
      return reply.code(201).send(await view(rep));
    });

    app.get('/vaults/:vault/replications/:replication', { schema: { params: RepParams } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      return view(await repos.replications.get(v.id, req.params.replication));
    });

    app.get('/vaults/:vault/replications/:replication/points', {
      schema: { params: RepParams, querystring: Type.Object({ limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,5}$' })) }, { additionalProperties: false }) },
    }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const rep = await repos.replications.get(v.id, req.params.replication);
      const limit = req.query.limit ? Number(req.query.limit) : 100;
      return { items: (await repos.replications.listPoints(rep.id, limit)).map(pointView) };
    });

    app.get('/vaults/:vault/replications/:replication/points/:point', {
      schema: { params: Type.Object({ vault: Name, replication: Name, point: Id }) },
    }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const rep = await repos.replications.get(v.id, req.params.replication);
      const point = await repos.replications.getPoint(rep.id, req.params.point);
      const store = await deps.sites.store(await repos.sites.byId(rep.targetSiteId));
      const manifest = await store.getPoint(rep.id, point.id);
      return {
        ...pointView(point),
        disks: manifest.disks.map((d) => ({ name: d.name, sizeBytes: d.sizeBytes, chunkSize: d.chunkSize, storedChunks: d.storedChunks })),
        store: store.backend.location,
      };
    });

    const OperationBody = Type.Object(
      { point: Type.Optional(Type.Union([Type.Literal('latest'), Id], { description: "'latest' or a recovery point id" })) },
      { additionalProperties: false },
    );
    for (const operation of OPERATIONS) {
      const takesPoint = operation === 'test-failover' || operation === 'failover';
      app.post(`/vaults/:vault/replications/:replication/${operation}`, {
        schema: { params: RepParams, ...(takesPoint ? { body: Type.Union([OperationBody, Type.Null()]) } : {}) },
      }, async (req, reply) => {
        const body = (takesPoint ? req.body : undefined) as { point?: string } | null | undefined;
        const job = await deps.operations.request(req.params.vault, req.params.replication, operation, body ?? {});
        return reply.code(202).header('location', `/api/v1/vaults/${req.params.vault}/jobs/${job.id}`).send(job);
      });
    }
  };
}
