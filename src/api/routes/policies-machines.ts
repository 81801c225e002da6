import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { RefugeError } from '../../core/errors.js';
import { HEARTBEAT_LOST_SECONDS } from '../../vault/health.js';
import { POLICY_CHUNK_SIZES_KIB } from '../../vault/model.js';
import type { AppDeps } from '../deps.js';
import { machineView, policyView, type SiteNames } from '../views.js';
import { Name, VaultParams, named } from './params.js';
import { ListQuery, Limit, listPage } from './paging.js';

const PolicyFields = {
  crashIntervalSeconds: Type.Optional(Type.Number({ minimum: 1, maximum: 86400 })),
  retentionHours: Type.Optional(Type.Number({ minimum: 1, maximum: 15 * 24 })),
  rpoThresholdSeconds: Type.Optional(Type.Number({ minimum: 1 })),
  appIntervalSeconds: Type.Optional(Type.Union([Type.Number({ minimum: 60, maximum: 86400 }), Type.Null()])),
  bandwidthMiBps: Type.Optional(Type.Union([Type.Number({ exclusiveMinimum: 0 }), Type.Null()])),
  chunkSizeKiB: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.Null()])),
};

/** A policy's chunk size, checked with a message that says which values are allowed (a schema error would not). */
function checkChunkSize(kib: number | null | undefined): void {
  if (kib === undefined || kib === null || (POLICY_CHUNK_SIZES_KIB as readonly number[]).includes(kib)) return;
  throw new RefugeError('invalid_argument', `chunkSizeKiB ${kib} is not a usable chunk size`, { hint: `use one of ${POLICY_CHUNK_SIZES_KIB.join(', ')} (KiB), or null for the store's` });
}

/** Policies, machines (registered by agents) and their agents. */
export function policyMachineRoutes(deps: AppDeps): FastifyPluginAsync {
  const { repos } = deps;
  const siteNames = async (vaultId: string): Promise<SiteNames> => new Map((await repos.sites.list(vaultId)).map((s) => [s.id, s.name]));

  return async (fastify) => {
    const app = fastify.withTypeProvider<TypeBoxTypeProvider>();

    app.get('/vaults/:vault/policies', { schema: { params: VaultParams, querystring: ListQuery } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const { limit, after } = listPage(req.query);
      return listPage.wrap((await repos.policies.list(v.id, { limit, ...(after ? { after } : {}) })).map(policyView), limit);
    });

    app.post('/vaults/:vault/policies', {
      config: { permission: 'configure' },
      schema: { params: VaultParams, body: Type.Object({ name: Name, ...PolicyFields }, { additionalProperties: false }) },
    }, async (req, reply) => {
      const v = await repos.vaults.get(req.params.vault);
      const b = req.body;
      checkChunkSize(b.chunkSizeKiB);
      // Defaults are ASR's: crash-consistent points every 5 minutes, 1 day retention, app-consistent off; alert at 15 minutes of RPO.
      const p = await repos.policies.create({
        vaultId: v.id,
        name: b.name,
        crashIntervalSeconds: b.crashIntervalSeconds ?? 300,
        retentionHours: b.retentionHours ?? 24,
        rpoThresholdSeconds: b.rpoThresholdSeconds ?? 900,
        appIntervalSeconds: b.appIntervalSeconds ?? null,
        bandwidthMiBps: b.bandwidthMiBps ?? null,
        chunkSizeKiB: b.chunkSizeKiB ?? null,
      });
      return reply.code(201).send(policyView(p));
    });

    app.get('/vaults/:vault/policies/:policy', { schema: { params: named('policy') } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      return policyView(await repos.policies.get(v.id, req.params.policy));
    });

    app.patch('/vaults/:vault/policies/:policy', {
      config: { permission: 'configure' },
      schema: { params: named('policy'), body: Type.Object(PolicyFields, { additionalProperties: false }) },
    }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const p = await repos.policies.get(v.id, req.params.policy);
      const { chunkSizeKiB, ...change } = req.body;
      if (chunkSizeKiB !== undefined && chunkSizeKiB !== p.chunkSizeKiB) {
        // A new chunk size shares no chunk with the points already stored: every replication would copy its disks again.
        throw new RefugeError('failed_precondition', `policy '${p.name}' keeps its chunk size (${p.chunkSizeKiB === null ? "the store's" : `${p.chunkSizeKiB} KiB`}) for as long as it exists`, {
          hint: 'create a new policy with the chunk size and move replications to it (each then copies its disks once)',
        });
      }
      return policyView(await repos.policies.update(p, change));
    });

    app.delete('/vaults/:vault/policies/:policy', { config: { permission: 'configure' }, schema: { params: named('policy') } }, async (req, reply) => {
      const v = await repos.vaults.get(req.params.vault);
      await repos.policies.delete(await repos.policies.get(v.id, req.params.policy));
      return reply.code(204).send();
    });

    const MachineQuery = Type.Object({ site: Type.Optional(Name), limit: Type.Optional(Limit), cursor: Type.Optional(Name) }, { additionalProperties: false });
    app.get('/vaults/:vault/machines', { schema: { params: VaultParams, querystring: MachineQuery } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const { limit, after } = listPage(req.query);
      const siteId = req.query.site ? (await repos.sites.get(v.id, req.query.site)).id : undefined;
      const names = await siteNames(v.id);
      return listPage.wrap((await repos.machines.list(v.id, { limit, ...(after ? { after } : {}), ...(siteId ? { siteId } : {}) })).map((m) => machineView(m, names)), limit);
    });

    app.get('/vaults/:vault/machines/:machine', { schema: { params: named('machine') } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      return machineView(await repos.machines.get(v.id, req.params.machine), await siteNames(v.id));
    });

    app.delete('/vaults/:vault/machines/:machine', { config: { permission: 'configure' }, schema: { params: named('machine') } }, async (req, reply) => {
      const v = await repos.vaults.get(req.params.vault);
      await repos.machines.delete(await repos.machines.get(v.id, req.params.machine));
      return reply.code(204).send();
    });

    // Agents: each machine's agent, its version, heartbeat, last error, reachability report and clock.
    app.get('/vaults/:vault/agents', { schema: { params: VaultParams, querystring: MachineQuery } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const { limit, after } = listPage(req.query);
      const siteId = req.query.site ? (await repos.sites.get(v.id, req.query.site)).id : undefined;
      const machines = await repos.machines.list(v.id, { limit, ...(after ? { after } : {}), ...(siteId ? { siteId } : {}) });
      const names = await siteNames(v.id);
      const now = new Date();
      const items = machines.map((m) => {
        const lost = !m.lastHeartbeatAt || now.getTime() - Date.parse(m.lastHeartbeatAt) > HEARTBEAT_LOST_SECONDS * 1000;
        return { name: m.name, machine: m.name, site: names.get(m.siteId) ?? m.siteId, version: m.agentVersion, lastHeartbeatAt: m.lastHeartbeatAt, status: lost ? 'lost' : 'connected', lastError: m.lastAgentError, report: m.agentReport };
      });
      return listPage.wrap(items, limit);
    });
  };
}
