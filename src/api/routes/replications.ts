import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { RefugeError } from '../../core/errors.js';
import type { Replication } from '../../vault/model.js';
import { OPERATIONS, POINT_OPERATIONS, REPLICATION_STATES } from '../../vault/replication-state.js';
import { HEALTH } from '../../vault/health.js';
import { Limit, listPage } from './paging.js';
import type { AppDeps } from '../deps.js';
import { pointView, replicationView } from '../views.js';
import { Id, Name, VaultParams, named } from './params.js';

/** An owner's reason to go ahead although a readiness check failed (recorded in the report and the audit log). */
const Override = Type.Object({ reason: Type.String({ minLength: 3, maxLength: 1000 }) }, { additionalProperties: false });

/** Replications: enable, inspect, list points, and the operations (answered 202 with the job that runs them). */
export function replicationRoutes(deps: AppDeps): FastifyPluginAsync {
  const { repos } = deps;

  /** Views of replications with their machines, policies, latest points and names resolved in a few queries. */
  const views = async (vaultId: string, reps: Replication[]) => {
    const [machines, policies, latest, sites, groups] = await Promise.all([
      repos.machines.byIds([...new Set(reps.map((r) => r.machineId))]),
      repos.policies.list(vaultId),
      repos.replications.latestPoints(reps.map((r) => r.id)),
      repos.sites.list(vaultId),
      repos.groups.list(vaultId),
    ]);
    const machineById = new Map(machines.map((m) => [m.id, m]));
    const policyById = new Map(policies.map((p) => [p.id, p]));
    const siteNames = new Map(sites.map((x) => [x.id, x.name]));
    const groupNames = new Map(groups.map((g) => [g.id, g.name]));
    return reps.flatMap((r) => {
      const machine = machineById.get(r.machineId);
      const policy = policyById.get(r.policyId);
      if (!machine || !policy) return [];
      return [{ ...replicationView(r, { machine, policy, latest: latest.get(r.id), sites: siteNames }), group: r.groupId ? (groupNames.get(r.groupId) ?? null) : null }];
    });
  };
  const view = async (r: Replication) => {
    const [v] = await views(r.vaultId, [r]);
    if (!v) throw new RefugeError('internal', `replication '${r.name}' has no machine or policy`);
    return v;
  };

  const RepParams = named('replication');
  return async (fastify) => {
    const app = fastify.withTypeProvider<TypeBoxTypeProvider>();

    app.get('/vaults/:vault/replications', {
      schema: {
        params: VaultParams,
        querystring: Type.Object(
          {
            state: Type.Optional(Type.Union(REPLICATION_STATES.map((x) => Type.Literal(x)))),
            health: Type.Optional(Type.Union(HEALTH.map((x) => Type.Literal(x)))),
            targetSite: Type.Optional(Name),
            sourceSite: Type.Optional(Name),
            group: Type.Optional(Name),
            limit: Type.Optional(Limit),
            cursor: Type.Optional(Name),
          },
          { additionalProperties: false },
        ),
      },
    }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const q = req.query;
      const { limit, after } = listPage(q);
      const filter = {
        limit,
        ...(after ? { after } : {}),
        ...(q.state ? { state: q.state } : {}),
        ...(q.targetSite ? { targetSiteId: (await repos.sites.get(v.id, q.targetSite)).id } : {}),
        ...(q.sourceSite ? { sourceSiteId: (await repos.sites.get(v.id, q.sourceSite)).id } : {}),
        ...(q.group ? { groupId: (await repos.groups.get(v.id, q.group)).id } : {}),
      };
      // Health is derived, not stored: filter a page after computing it (a page may hold fewer than `limit`).
      const reps = await repos.replications.list(v.id, filter);
      const items = (await views(v.id, reps)).filter((x) => !q.health || x.health === q.health);
      return { items, nextCursor: reps.length === limit ? (reps.at(-1)?.name ?? null) : null };
    });

    app.patch('/vaults/:vault/replications/:replication', {
      config: { permission: 'configure' },
      schema: { params: RepParams, body: Type.Object({ policy: Type.Optional(Name), group: Type.Optional(Type.Union([Name, Type.Null()])) }, { additionalProperties: false }) },
    }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const rep = await repos.replications.get(v.id, req.params.replication);
      if (req.body.policy) await repos.replications.setPolicy(rep.id, (await repos.policies.get(v.id, req.body.policy)).id);
      if (req.body.group !== undefined) await repos.replications.setGroup(rep.id, req.body.group === null ? null : (await repos.groups.get(v.id, req.body.group)).id);
      return view(await repos.replications.byId(rep.id));
    });

    app.post('/vaults/:vault/replications', {
      config: { permission: 'configure' },
      schema: {
        params: VaultParams,
        body: Type.Object({ machine: Name, policy: Name, targetSite: Name, group: Type.Optional(Name), override: Type.Optional(Override) }, { additionalProperties: false }),
      },
    }, async (req, reply) => {
      const v = await repos.vaults.get(req.params.vault);
      const machine = await repos.machines.get(v.id, req.body.machine);
      const policy = await repos.policies.get(v.id, req.body.policy);
      const target = await repos.sites.get(v.id, req.body.targetSite);
      const group = req.body.group ? await repos.groups.get(v.id, req.body.group) : undefined;
      if (target.id === machine.siteId) {
        throw new RefugeError('invalid_argument', `machine '${machine.name}' already runs at site '${target.name}'; choose another target site`, {
          details: { field: '/body/targetSite' },
        });
      }
      // Readiness first: a failed check blocks, unless an owner overrides it with a recorded reason.
      const report = await deps.readiness.forEnable(v, machine, target, policy, { trigger: 'enable', principal: req.principal, permission: 'configure' });
      await deps.readiness.gate(report, req.principal, req.body.override);
      const rep = await repos.replications.create({
        vaultId: v.id,
        name: machine.name,
        machineId: machine.id,
        policyId: policy.id,
        sourceSiteId: machine.siteId,
        targetSiteId: target.id,
      });
      if (group) await repos.replications.setGroup(rep.id, group.id);
      await deps.monitoring.events.record({ vaultId: v.id, type: 'replication.enabled', severity: 'info', subject: rep.name, message: `replication of '${rep.name}' to '${target.name}' enabled (readiness ${report.worst})`, details: { readinessReport: report.id } });
      return reply.code(201).send({ ...(await view(group ? await repos.replications.byId(rep.id) : rep)), readiness: { report: report.id, worst: report.worst } });
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

    const PointChoice = Type.String({
      minLength: 1,
      maxLength: 64,
      description: "'latest', 'latest-processed', 'latest-app-consistent', 'latest-multi-machine' or a recovery point id",
    });
    const OperationBody = Type.Object(
      {
        point: Type.Optional(PointChoice),
        override: Type.Optional(Override),
        mode: Type.Optional(Type.Union([Type.Literal('instant'), Type.Literal('restore-first')], { description: 'instant (default where the fabric can): start from the store, hydrate in the background' })),
        hydrationMiBps: Type.Optional(Type.Number({ exclusiveMinimum: 0, description: 'limit of the background hydration copy, MiB/s' })),
        sourceShutDown: Type.Optional(Type.Boolean({ description: 'planned failover: the operator confirms the source machine is shut down' })),
      },
      { additionalProperties: false },
    );
    for (const operation of OPERATIONS) {
      app.post(`/vaults/:vault/replications/:replication/${operation}`, {
        // ASR's operators fail over but may not change configuration: disabling protection is configuration.
        config: { permission: operation === 'disable' ? 'configure' : 'operate' },
        schema: { params: RepParams, body: Type.Union([OperationBody, Type.Null()]) },
      }, async (req, reply) => {
        const body = req.body ?? {};
        if (body.point !== undefined && !POINT_OPERATIONS.includes(operation)) {
          throw new RefugeError('invalid_argument', `${operation} takes no recovery point; only ${POINT_OPERATIONS.join(', ')} do`, { details: { field: '/body/point' } });
        }
        const job = await deps.operations.request(req.params.vault, req.params.replication, operation, { ...body, principal: req.principal });
        return reply.code(202).header('location', `/api/v1/vaults/${req.params.vault}/jobs/${job.id}`).send(job);
      });
    }
  };
}
