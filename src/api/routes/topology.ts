import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { RefugeError } from '../../core/errors.js';
import { PLAN_ACTION_KINDS, type NetworkMapping, type RecoveryPlan, type Vault } from '../../vault/model.js';
import type { AppDeps } from '../deps.js';
import { Name, VaultParams, named } from './params.js';
import { ListQuery, listPage } from './paging.js';

const Action = Type.Object(
  { name: Name, kind: Type.Union(PLAN_ACTION_KINDS.map((k) => Type.Literal(k))), target: Type.String({ minLength: 1, maxLength: 4096 }), timeoutSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 86400 })),
    site: Type.Optional(Type.Union([Type.Literal('primary'), Type.Literal('recovery')], { description: 'script: the site it acts on (default recovery)' })) },
  { additionalProperties: false },
);
// ASR's limits: 7 groups, 100 machines per plan.
const Groups = Type.Array(
  Type.Object(
    { name: Name, replications: Type.Array(Name, { maxItems: 100 }), pre: Type.Optional(Type.Array(Action, { maxItems: 20 })), post: Type.Optional(Type.Array(Action, { maxItems: 20 })) },
    { additionalProperties: false },
  ),
  { minItems: 1, maxItems: 7 },
);

/** Network mappings, consistency groups and recovery plans (CRUD; running plans is the orchestration's). */
export function topologyRoutes(deps: AppDeps): FastifyPluginAsync {
  const { repos, plans } = deps;
  return async (fastify) => {
    const app = fastify.withTypeProvider<TypeBoxTypeProvider>();

    const mappingView = async (m: NetworkMapping) => ({
      name: m.name,
      sourceSite: (await repos.sites.byId(m.sourceSiteId)).name,
      sourceNetwork: m.sourceNetwork,
      targetSite: (await repos.sites.byId(m.targetSiteId)).name,
      targetNetwork: m.targetNetwork,
      testNetwork: m.testNetwork,
      createdAt: m.createdAt,
    });
    app.get('/vaults/:vault/network-mappings', { schema: { params: VaultParams, querystring: ListQuery } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const { limit, after } = listPage(req.query);
      return listPage.wrap(await Promise.all((await repos.mappings.list(v.id, { limit, ...(after ? { after } : {}) })).map(mappingView)), limit);
    });
    app.post('/vaults/:vault/network-mappings', {
      config: { permission: 'configure' },
      schema: {
        params: VaultParams,
        body: Type.Object({ name: Name, sourceSite: Name, sourceNetwork: Name, targetSite: Name, targetNetwork: Name, testNetwork: Type.Optional(Name) }, { additionalProperties: false }),
      },
    }, async (req, reply) => {
      const v = await repos.vaults.get(req.params.vault);
      const b = req.body;
      const [source, target] = [await repos.sites.get(v.id, b.sourceSite), await repos.sites.get(v.id, b.targetSite)];
      for (const [site, network, field] of [[source, b.sourceNetwork, 'sourceNetwork'], [target, b.targetNetwork, 'targetNetwork'], ...(b.testNetwork ? [[target, b.testNetwork, 'testNetwork'] as const] : [])] as const) {
        if (!site.networks.some((n) => n.name === network)) {
          throw new RefugeError('invalid_argument', `site '${site.name}' has no network '${network}'`, { details: { field: `/body/${field}` }, hint: `add it with PATCH /sites/${site.name} { networks }` });
        }
      }
      const m = await repos.mappings.create({ vaultId: v.id, name: b.name, sourceSiteId: source.id, sourceNetwork: b.sourceNetwork, targetSiteId: target.id, targetNetwork: b.targetNetwork, testNetwork: b.testNetwork ?? null });
      return reply.code(201).send(await mappingView(m));
    });
    app.get('/vaults/:vault/network-mappings/:mapping', { schema: { params: named('mapping') } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      return mappingView(await repos.mappings.get(v.id, req.params.mapping));
    });
    app.delete('/vaults/:vault/network-mappings/:mapping', { config: { permission: 'configure' }, schema: { params: named('mapping') } }, async (req, reply) => {
      const v = await repos.vaults.get(req.params.vault);
      await repos.mappings.delete(await repos.mappings.get(v.id, req.params.mapping));
      return reply.code(204).send();
    });

    const groupView = async (g: { id: string; name: string; vaultId: string; createdAt: string }) => ({
      name: g.name,
      replications: (await repos.replications.list(g.vaultId, { groupId: g.id })).map((r) => r.name),
      createdAt: g.createdAt,
    });
    app.get('/vaults/:vault/consistency-groups', { schema: { params: VaultParams, querystring: ListQuery } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const { limit, after } = listPage(req.query);
      return listPage.wrap(await Promise.all((await repos.groups.list(v.id, { limit, ...(after ? { after } : {}) })).map(groupView)), limit);
    });
    app.post('/vaults/:vault/consistency-groups', {
      config: { permission: 'configure' },
      schema: { params: VaultParams, body: Type.Object({ name: Name }, { additionalProperties: false }) },
    }, async (req, reply) => {
      const v = await repos.vaults.get(req.params.vault);
      return reply.code(201).send(await groupView(await repos.groups.create(v.id, req.body.name)));
    });
    app.get('/vaults/:vault/consistency-groups/:group', { schema: { params: named('group') } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      return groupView(await repos.groups.get(v.id, req.params.group));
    });
    app.delete('/vaults/:vault/consistency-groups/:group', { config: { permission: 'configure' }, schema: { params: named('group') } }, async (req, reply) => {
      const v = await repos.vaults.get(req.params.vault);
      await repos.groups.delete(await repos.groups.get(v.id, req.params.group));
      return reply.code(204).send();
    });

    /** A plan with the operations a run may be asked for now (as a replication lists its allowed operations). */
    const planView = async (v: Vault, p: RecoveryPlan) => ({
      name: p.name,
      description: p.description,
      groups: p.groups,
      allowedOperations: await plans.allowedOperations(v, p),
      createdAt: p.createdAt,
      updatedAt: p.updatedAt,
    });
    const checkPlan = async (vaultId: string, groups: { replications: string[] }[]) => {
      const names = groups.flatMap((g) => g.replications);
      if (new Set(names).size !== names.length) throw new RefugeError('invalid_argument', 'a replication appears twice in the plan', { details: { field: '/body/groups' } });
      if (names.length > 100) throw new RefugeError('invalid_argument', `a plan holds at most 100 machines, not ${names.length}`, { details: { field: '/body/groups' } });
      const found = new Set((await repos.replications.list(vaultId, { names })).map((r) => r.name));
      const missing = names.filter((n) => !found.has(n));
      if (missing.length > 0) throw new RefugeError('invalid_argument', `no replication named ${missing.map((m) => `'${m}'`).join(', ')}`, { details: { field: '/body/groups' } });
    };
    const withActions = (groups: { name: string; replications: string[]; pre?: RecoveryPlan['groups'][number]['pre']; post?: RecoveryPlan['groups'][number]['post'] }[]) =>
      groups.map((g) => ({ name: g.name, replications: g.replications, pre: g.pre ?? [], post: g.post ?? [] }));
    app.get('/vaults/:vault/recovery-plans', { schema: { params: VaultParams, querystring: ListQuery } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const { limit, after } = listPage(req.query);
      return listPage.wrap(await Promise.all((await repos.plans.list(v.id, { limit, ...(after ? { after } : {}) })).map((p) => planView(v, p))), limit);
    });
    app.post('/vaults/:vault/recovery-plans', {
      config: { permission: 'configure' },
      schema: { params: VaultParams, body: Type.Object({ name: Name, description: Type.Optional(Type.String({ maxLength: 2000 })), groups: Groups }, { additionalProperties: false }) },
    }, async (req, reply) => {
      const v = await repos.vaults.get(req.params.vault);
      await checkPlan(v.id, req.body.groups);
      const p = await repos.plans.create({ vaultId: v.id, name: req.body.name, description: req.body.description ?? '', groups: withActions(req.body.groups) });
      return reply.code(201).send(await planView(v, p));
    });
    app.get('/vaults/:vault/recovery-plans/:plan', { schema: { params: named('plan') } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      return planView(v, await repos.plans.get(v.id, req.params.plan));
    });
    app.patch('/vaults/:vault/recovery-plans/:plan', {
      config: { permission: 'configure' },
      schema: { params: named('plan'), body: Type.Object({ description: Type.Optional(Type.String({ maxLength: 2000 })), groups: Type.Optional(Groups) }, { additionalProperties: false }) },
    }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      if (req.body.groups) await checkPlan(v.id, req.body.groups);
      const p = await repos.plans.get(v.id, req.params.plan);
      return planView(v, await repos.plans.update(p, { ...(req.body.description !== undefined ? { description: req.body.description } : {}), ...(req.body.groups ? { groups: withActions(req.body.groups) } : {}) }));
    });
    app.delete('/vaults/:vault/recovery-plans/:plan', { config: { permission: 'configure' }, schema: { params: named('plan') } }, async (req, reply) => {
      const v = await repos.vaults.get(req.params.vault);
      await repos.plans.delete(await repos.plans.get(v.id, req.params.plan));
      return reply.code(204).send();
    });
  };
}
