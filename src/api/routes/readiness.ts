import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { RefugeError } from '../../core/errors.js';
import { SCOPES } from '../../vault/readiness/types.js';
import type { AppDeps } from '../deps.js';
import { Id, Name, VaultParams } from './params.js';
import { Limit, page } from './paging.js';

/** Readiness checks on demand, and the reports of every run (on demand, before operations, periodic). */
export function readinessRoutes(deps: AppDeps): FastifyPluginAsync {
  const { repos, readiness } = deps;
  return async (fastify) => {
    const app = fastify.withTypeProvider<TypeBoxTypeProvider>();

    app.post('/vaults/:vault/readiness', {
      // Checking changes nothing but the stored report: a reader may run it, and it is not audited.
      config: { permission: 'read', audit: false },
      schema: {
        params: VaultParams,
        body: Type.Object(
          {
            replication: Type.Optional(Name),
            machine: Type.Optional(Name),
            targetSite: Type.Optional(Name),
            policy: Type.Optional(Name),
            plan: Type.Optional(Name),
            site: Type.Optional(Name),
          },
          { additionalProperties: false, description: 'one of: replication; machine with targetSite (and policy); plan; site' },
        ),
      },
    }, async (req, reply) => {
      const v = await repos.vaults.get(req.params.vault);
      const b = req.body;
      const o = { trigger: 'on-demand' as const, principal: req.principal, permission: 'read' as const };
      let report;
      if (b.replication) report = await readiness.forReplication(v, await repos.replications.get(v.id, b.replication), o);
      else if (b.machine && b.targetSite) {
        const policy = b.policy ? await repos.policies.get(v.id, b.policy) : (await repos.policies.list(v.id, { limit: 1 }))[0];
        if (!policy) throw new RefugeError('failed_precondition', 'there is no policy yet', { hint: 'create one with `refuge policy create default`' });
        report = await readiness.forEnable(v, await repos.machines.get(v.id, b.machine), await repos.sites.get(v.id, b.targetSite), policy, { ...o, permission: 'configure' });
      } else if (b.plan) report = await readiness.forPlan(v, await repos.plans.get(v.id, b.plan), o);
      else if (b.site) report = await readiness.forSite(v, await repos.sites.get(v.id, b.site), o);
      else throw new RefugeError('invalid_argument', '/body needs one of replication, machine with targetSite, plan or site', { details: { field: '/body' } });
      return reply.code(201).send(report);
    });

    app.get('/vaults/:vault/readiness', {
      schema: {
        params: VaultParams,
        querystring: Type.Object({ scope: Type.Optional(Type.Union(SCOPES.map((s) => Type.Literal(s)))), subject: Type.Optional(Name), limit: Type.Optional(Limit), cursor: Type.Optional(Id) }, { additionalProperties: false }),
      },
    }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const q = req.query;
      const limit = q.limit ? Number(q.limit) : 50;
      const items = await readiness.list(v.id, { ...(q.scope ? { scope: q.scope } : {}), ...(q.subject ? { subject: q.subject } : {}), ...(q.cursor ? { before: q.cursor } : {}), limit });
      return page(items, limit, (r) => r.id);
    });

    app.get('/vaults/:vault/readiness/:report', { schema: { params: Type.Object({ vault: Name, report: Id }) } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      return readiness.get(v.id, req.params.report);
    });
  };
}
