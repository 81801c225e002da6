import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { HeartbeatRequest, HeartbeatResponse, RegisterRequest, RegisterResponse } from '../../protocol/schemas.js';
import { isReplicating } from '../../vault/replication-state.js';
import type { AppDeps } from '../deps.js';
import { VaultParams, named } from './params.js';

/**
 * The agent's side of the vault API (docs/protocol.md): registration and heartbeats. The heartbeat answer tells the
 * agent whether to replicate, with the policy's interval and where the replicator is.
 */
export function agentRoutes(deps: AppDeps): FastifyPluginAsync {
  const { repos } = deps;
  return async (fastify) => {
    const app = fastify.withTypeProvider<TypeBoxTypeProvider>();

    app.post('/vaults/:vault/agents/register', {
      config: { permission: 'agent' },
      schema: { params: VaultParams, body: RegisterRequest, response: { 200: RegisterResponse } },
    }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const site = await repos.sites.get(v.id, req.body.site);
      const m = await repos.machines.register(v.id, site.id, req.body.agentVersion, req.body.machine);
      return { machineId: m.id, machine: m.name, vault: v.name };
    });

    app.post('/vaults/:vault/agents/:machine/heartbeat', {
      // Heartbeats are not changes anyone asked for: not audited (every 10 s per agent).
      config: { permission: 'agent', audit: false },
      schema: { params: named('machine'), body: HeartbeatRequest, response: { 200: HeartbeatResponse } },
    }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const m = await repos.machines.get(v.id, req.params.machine);
      // The agent's clock against ours (a heartbeat takes milliseconds), kept with its latest reachability report.
      const now = new Date();
      const skew = req.body.sentAt ? (now.getTime() - Date.parse(req.body.sentAt)) / 1000 : undefined;
      const base = req.body.report ? { ...req.body.report, receivedAt: now.toISOString() } : m.agentReport;
      const report = base && (req.body.report || skew !== undefined) ? { ...base, ...(skew !== undefined ? { clockSkewSeconds: skew } : {}) } : undefined;
      await repos.machines.heartbeat(m.id, req.body.agentVersion, req.body.lastError ?? null, report);
      const rep = await repos.replications.findByMachine(m.id);
      if (!rep) return { serverTime: new Date().toISOString(), replication: null };
      if (req.body.progress) await repos.replications.setProgress(rep.id, req.body.progress);
      const [policy, latest, target] = await Promise.all([
        repos.policies.byId(rep.policyId),
        repos.replications.latestPoint(rep.id),
        repos.sites.byId(rep.targetSiteId),
      ]);
      const store = await deps.sites.store(target);
      // Only the agent at the replication's source replicates: after a re-protect the machine's former site may
      // come back with its old agent still running, which must not ship its stale disks as the source.
      const agentSite = req.body.site ? (await repos.sites.get(v.id, req.body.site)).id : m.siteId;
      const ops = rep.failover;
      return {
        serverTime: new Date().toISOString(),
        replication: {
          replicationId: rep.id,
          // A re-protect lets the new source ship only once the seed is in place and the direction reversed.
          mode: isReplicating(rep.state) && agentSite === rep.sourceSiteId && (rep.state !== 'reprotecting' || ops.reprotectShipping) ? ('replicate' as const) : ('stop' as const),
          ...(ops.resyncAfter ? { resyncAfter: ops.resyncAfter } : {}),
          ...(ops.cutAfter ? { cutAfter: ops.cutAfter } : {}),
          crashIntervalSeconds: policy.crashIntervalSeconds,
          chunkSize: store.chunkSize,
          replicatorUrl: deps.replicators.urlFor(target.id) ?? deps.replicatorUrl(),
          // Before the first point of a re-protected replication, its parent is the seed from the former source's disks.
          latestPointId: latest?.id ?? ops.seedPointId ?? null,
        },
      };
    });
  };
}
