import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { RefugeError } from '../../core/errors.js';
import { sleep } from '../../core/durations.js';
import {
  AgentEventRequest,
  BarrierRequest,
  BarrierResponse,
  CutResultRequest,
  CutResultResponse,
  GroupCutPoll,
} from '../../protocol/group-cut.js';
import { GroupCutCoordinator } from '../../vault/group-cuts.js';
import type { GroupCut } from '../../vault/repositories/group-cuts.js';
import type { AppDeps } from '../deps.js';
import { Id, Name, named } from './params.js';

/** How long one barrier request is held open before the agent is told to ask again (below HTTP timeouts). */
const LONG_POLL_MS = 20_000;
/** How often a held barrier request looks at the members (the database is the only shared state between vaults). */
const BARRIER_POLL_MS = 15;

/**
 * Consistency-group cuts (../../vault/group-cuts.ts, ../../protocol/group-cut.ts): the agents' side (is there a cut
 * for me, the barrier, the outcome, agent events) and the operators' side (open a cut now, list cuts).
 */
export function groupRoutes(deps: AppDeps): FastifyPluginAsync {
  const { repos } = deps;
  const coordinator = deps.groupCuts ?? new GroupCutCoordinator(repos.db, deps.monitoring.events);
  const cuts = coordinator.cuts;
  const AgentCutParams = Type.Object({ vault: Name, machine: Name, cut: Id });

  /** The machine's replication, and the cut it is a member of (404 if it is not). */
  const memberOf = async (vault: string, machine: string, cutId: string) => {
    const v = await repos.vaults.get(vault);
    const m = await repos.machines.get(v.id, machine);
    const rep = await repos.replications.findByMachine(m.id);
    const cut = await cuts.get(cutId);
    if (!rep || cut.vaultId !== v.id || !cut.members.some((x) => x.replicationId === rep.id)) {
      throw new RefugeError('not_found', `machine '${machine}' takes no part in group cut '${cutId}'`);
    }
    return { v, m, rep, cut };
  };

  const cutView = (c: GroupCut, names: Map<string, string>) => ({
    id: c.id,
    state: c.state,
    trigger: c.trigger,
    openedAt: c.openedAt,
    resolvedAt: c.resolvedAt,
    reason: c.reason,
    members: c.members.map((m) => ({ replication: names.get(m.replicationId) ?? m.replicationId, phase: m.phase, pointId: m.pointId, error: m.error })),
  });
  const names = async (vaultId: string, groupId: string) =>
    new Map((await repos.replications.list(vaultId, { groupId })).map((r) => [r.id, r.name] as const));

  return async (fastify) => {
    const app = fastify.withTypeProvider<TypeBoxTypeProvider>();

    app.get('/vaults/:vault/agents/:machine/group-cut', {
      config: { permission: 'agent', audit: false },
      schema: { params: named('machine'), response: { 200: GroupCutPoll } },
    }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const m = await repos.machines.get(v.id, req.params.machine);
      const rep = await repos.replications.findByMachine(m.id);
      const cut = rep ? await cuts.pendingFor(rep.id) : undefined;
      if (!cut) return { cut: null };
      const group = await repos.db.selectFrom('consistencyGroups').select('name').where('id', '=', cut.groupId).executeTakeFirstOrThrow();
      return { cut: { cutId: cut.id, group: group.name, pauseSeconds: cut.pauseSeconds, barrierDeadline: cut.barrierDeadline } };
    });

    app.post('/vaults/:vault/agents/:machine/group-cuts/:cut/barrier', {
      config: { permission: 'agent', audit: false },
      schema: { params: AgentCutParams, body: BarrierRequest, response: { 200: BarrierResponse } },
    }, async (req) => {
      const { rep, cut } = await memberOf(req.params.vault, req.params.machine, req.params.cut);
      await cuts.advance(cut, rep.id, req.body.phase);
      const until = Date.now() + LONG_POLL_MS;
      for (;;) {
        const status = await cuts.barrier(cut.id, req.body.phase);
        if (status.kind === 'proceed') return { proceed: true };
        if (status.kind === 'failed') return { proceed: false, reason: status.reason };
        if (Date.now() > until) return { proceed: false, reason: 'retry: still waiting for the other members' };
        await sleep(BARRIER_POLL_MS);
      }
    });

    app.post('/vaults/:vault/agents/:machine/group-cuts/:cut/result', {
      config: { permission: 'agent' },
      schema: { params: AgentCutParams, body: CutResultRequest, response: { 200: CutResultResponse } },
    }, async (req) => {
      const { rep, cut } = await memberOf(req.params.vault, req.params.machine, req.params.cut);
      await cuts.report(cut, rep.id, req.body);
      return { state: await cuts.settle(cut.id) };
    });

    app.post('/vaults/:vault/agents/:machine/events', {
      config: { permission: 'agent' },
      schema: { params: named('machine'), body: AgentEventRequest },
    }, async (req, reply) => {
      const v = await repos.vaults.get(req.params.vault);
      const m = await repos.machines.get(v.id, req.params.machine);
      await deps.monitoring.events.record({
        vaultId: v.id,
        type: `agent.${req.body.type}`,
        severity: 'warning',
        subject: m.name,
        message: req.body.message,
        details: req.body.details ?? {},
      });
      return reply.code(204).send();
    });

    app.post('/vaults/:vault/consistency-groups/:group/cuts', {
      config: { permission: 'operate' },
      schema: {
        params: named('group'),
        body: Type.Optional(Type.Object({
          barrierSeconds: Type.Optional(Type.Number({ minimum: 1, maximum: 3600 })),
          pauseSeconds: Type.Optional(Type.Number({ minimum: 0.1, maximum: 60 })),
          commitSeconds: Type.Optional(Type.Number({ minimum: 1, maximum: 86_400 })),
        }, { additionalProperties: false })),
      },
    }, async (req, reply) => {
      const v = await repos.vaults.get(req.params.vault);
      const g = await repos.groups.get(v.id, req.params.group);
      const cut = await coordinator.open(g, 'manual', req.body ?? {});
      return reply.code(201).send(cutView(cut, await names(v.id, g.id)));
    });

    app.get('/vaults/:vault/consistency-groups/:group/cuts', { schema: { params: named('group') } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const g = await repos.groups.get(v.id, req.params.group);
      const n = await names(v.id, g.id);
      return { items: (await cuts.list(g.id)).map((c) => cutView(c, n)) };
    });

    app.get('/vaults/:vault/consistency-groups/:group/cuts/:cut', { schema: { params: Type.Object({ vault: Name, group: Name, cut: Id }) } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const g = await repos.groups.get(v.id, req.params.group);
      const cut = await cuts.get(req.params.cut);
      if (cut.groupId !== g.id) throw new RefugeError('not_found', `group cut '${req.params.cut}' is not a cut of group '${g.name}'`);
      return cutView(cut, await names(v.id, g.id));
    });
  };
}
