import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { RefugeError } from '../../core/errors.js';
import {
  RecordPointRequest,
  ReplicationTargetInfo,
  ReplicatorReport,
  ReplicatorReportResponse,
} from '../../protocol/replicator-vault.js';
import { storeFullAlert, storeFullSubject } from '../../vault/monitoring/store-full.js';
import { isReplicating } from '../../vault/replication-state.js';
import type { AppDeps } from '../deps.js';
import { Id, Name, VaultParams, named } from './params.js';

/**
 * The vault's side of the standalone replicator exchange (docs/protocol.md): a replicator reports itself for a site
 * (which also registers it, so agents of replications targeting that site are sent to it), asks whether a
 * replication may send it data, and records the points it commits, with the churn and backlog it sees.
 */
export function replicatorRoutes(deps: AppDeps): FastifyPluginAsync {
  const { repos } = deps;
  return async (fastify) => {
    const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
    const SiteParams = named('site');

    app.put('/vaults/:vault/replicators/:site', {
      schema: { params: SiteParams, body: ReplicatorReport, response: { 200: ReplicatorReportResponse } },
      config: { permission: 'agent', audit: false },
    }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const site = await repos.sites.get(v.id, req.params.site);
      const previous = deps.replicators.report({ vaultId: v.id, siteId: site.id, site: site.name, ...req.body, reportedAt: new Date() });
      const { alerts } = deps.monitoring;
      const full = req.body.storeFull ?? null;
      if (full) {
        const rep = await repos.replications.byId(full.replication).catch(() => undefined);
        await alerts.raise(v.id, storeFullAlert(site.name, rep?.name ?? full.replication, full));
      } else if (previous ? previous.storeFull : req.body.replications.some((r) => r.lastCommittedAt !== null)) {
        // A commit went through since the refusal (or, after a vault restart, since the replicator started): room again.
        await alerts.resolve(v.id, 'replica-store-full', storeFullSubject(site.name));
      }
      return { site: site.name, store: site.config.store, reportIntervalSeconds: deps.replicators.reportIntervalSeconds, storeHoldsPoints: await repos.replications.hasPointsAt(site.id) };
    });

    app.get('/vaults/:vault/replicators', { schema: { params: VaultParams } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      return {
        items: deps.replicators.list(v.id).map((r) => ({
          site: r.site,
          url: r.url,
          version: r.version,
          reportedAt: r.reportedAt.toISOString(),
          live: deps.replicators.isLive(r),
          replications: r.replications,
        })),
      };
    });

    app.get('/vaults/:vault/replicators/:site/replications/:replication', {
      schema: {
        params: Type.Object({ vault: Name, site: Name, replication: Id }),
        // The SHA-256 fingerprint of the client certificate an agent presented to the replicator.
        querystring: Type.Object({ agent: Type.Optional(Type.String({ pattern: '^[0-9A-F]{2}(:[0-9A-F]{2}){31}$' })) }, { additionalProperties: false }),
        response: { 200: ReplicationTargetInfo },
      },
      config: { permission: 'agent' },
    }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const site = await repos.sites.get(v.id, req.params.site);
      const rep = await repos.replications.byId(req.params.replication);
      if (rep.vaultId !== v.id) throw new RefugeError('not_found', `replication '${req.params.replication}' not found`);
      const [target, policy] = await Promise.all([repos.sites.byId(rep.targetSiteId), repos.policies.byId(rep.policyId)]);
      const agentRefused = req.query.agent ? await deps.agentRefusal(req.query.agent, await repos.machines.byId(rep.machineId)) : undefined;
      return { replicationId: rep.id, name: rep.name, state: rep.state, targetSite: target.name, accepting: isReplicating(rep.state) && target.id === site.id, chunkSizeKiB: policy.chunkSizeKiB, ...(agentRefused ? { agentRefused } : {}) };
    });

    app.post('/vaults/:vault/replicators/:site/points', {
      schema: { params: SiteParams, body: RecordPointRequest },
      config: { permission: 'agent', audit: false },
    }, async (req, reply) => {
      const v = await repos.vaults.get(req.params.vault);
      const site = await repos.sites.get(v.id, req.params.site);
      const rep = await repos.replications.byId(req.body.replicationId);
      if (rep.vaultId !== v.id || rep.targetSiteId !== site.id) {
        throw new RefugeError('invalid_argument', `replication '${req.body.replicationId}' does not replicate to site '${site.name}'`);
      }
      await repos.replications.recordPoint(req.body);
      return reply.code(201).send({ recorded: req.body.id });
    });
  };
}
