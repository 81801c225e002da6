import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { RefugeError } from '../../core/errors.js';
import type { Drill, DrillRun } from '../../orchestration/drills/drill-repository.js';
import type { AppDeps } from '../deps.js';
import { Name, VaultParams, named } from './params.js';

const Timeout = Type.Optional(Type.Integer({ minimum: 1, maximum: 3600, description: 'how long the probe is retried while the copy boots (default 300 s)' }));
const ProbeSchema = Type.Union([
  Type.Object({ kind: Type.Literal('tcp'), host: Type.String({ minLength: 1, maxLength: 255 }), port: Type.Integer({ minimum: 1, maximum: 65535 }), timeoutSeconds: Timeout }, { additionalProperties: false }),
  Type.Object({ kind: Type.Literal('http'), url: Type.String({ minLength: 1, maxLength: 2048 }), expectStatus: Type.Optional(Type.Integer({ minimum: 100, maximum: 599 })), timeoutSeconds: Timeout }, { additionalProperties: false }),
  Type.Object({ kind: Type.Literal('command'), command: Type.String({ minLength: 1, maxLength: 4096 }), timeoutSeconds: Timeout }, { additionalProperties: false }),
], { description: 'health probe against the test copy; {machine} and {address} are replaced by its name and address' });
const Interval = Type.Integer({ minimum: 60, maximum: 366 * 86400, description: 'seconds between scheduled runs' });
const DrillParams = named('drill');

const runView = (r: DrillRun) => ({ id: r.id, job: r.jobId, subject: `${r.subjectKind}:${r.subject}`, trigger: r.trigger, startedAt: r.startedAt, endedAt: r.endedAt, outcome: r.outcome, rtoSeconds: r.rtoSeconds, cleanedUp: r.cleanedUp, error: r.error, details: r.details });

/** Drills: scheduled test failovers with a health probe; their runs with outcome and measured RTO. */
export function drillRoutes(deps: AppDeps): FastifyPluginAsync {
  const { repos, drills } = deps;
  const view = async (d: Drill) => {
    const runs = await drills.drills.runs(d.id, 1);
    const ok = (await drills.drills.lastRuns(d.vaultId, d.subjectKind, d.subject)).lastSuccessful;
    return {
      name: d.name,
      [d.subjectKind]: d.subject,
      intervalSeconds: d.intervalSeconds,
      nextRunAt: d.nextRunAt,
      enabled: d.enabled,
      probe: d.probe,
      lastRun: runs[0] ? runView(runs[0]) : null,
      lastSuccessfulRun: ok ? runView(ok) : null,
      createdAt: d.createdAt,
      updatedAt: d.updatedAt,
    };
  };
  return async (fastify) => {
    const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
    const tags = ['drills'];

    app.get('/vaults/:vault/drills', {
      schema: { summary: 'list drills (of a replication or a plan)', tags, params: VaultParams, querystring: Type.Object({ replication: Type.Optional(Name), plan: Type.Optional(Name) }, { additionalProperties: false }) },
    }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const q = req.query;
      const filter = q.replication ? { subjectKind: 'replication' as const, subject: q.replication } : q.plan ? { subjectKind: 'plan' as const, subject: q.plan } : {};
      return { items: await Promise.all((await drills.drills.list(v.id, filter)).map(view)) };
    });

    app.post('/vaults/:vault/drills', {
      config: { permission: 'configure' },
      schema: {
        summary: 'create a drill: a scheduled test failover of a replication or plan with a health probe',
        tags,
        params: VaultParams,
        body: Type.Object(
          { name: Name, replication: Type.Optional(Name), plan: Type.Optional(Name), intervalSeconds: Type.Optional(Interval), firstRunAt: Type.Optional(Type.String({ format: 'date-time' })), probe: ProbeSchema },
          { additionalProperties: false, description: 'exactly one of replication or plan; without intervalSeconds the drill only runs on request' },
        ),
      },
    }, async (req, reply) => {
      const b = req.body;
      if ((b.replication === undefined) === (b.plan === undefined)) throw new RefugeError('invalid_argument', 'a drill names exactly one of replication or plan', { details: { field: '/body' } });
      const d = await drills.create(req.params.vault, {
        name: b.name,
        subjectKind: b.replication ? 'replication' : 'plan',
        subject: (b.replication ?? b.plan) as string,
        ...(b.intervalSeconds ? { intervalSeconds: b.intervalSeconds } : {}),
        ...(b.firstRunAt ? { firstRunAt: b.firstRunAt } : {}),
        probe: b.probe,
      });
      return reply.code(201).send(await view(d));
    });

    app.get('/vaults/:vault/drills/:drill', { schema: { summary: 'a drill with its recent runs', tags, params: DrillParams } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const d = await drills.drills.get(v.id, req.params.drill);
      return { ...(await view(d)), runs: (await drills.drills.runs(d.id, 20)).map(runView) };
    });

    app.patch('/vaults/:vault/drills/:drill', {
      config: { permission: 'configure' },
      schema: {
        summary: 'change a drill\'s schedule, probe, or pause it',
        tags,
        params: DrillParams,
        body: Type.Object({ intervalSeconds: Type.Optional(Type.Union([Interval, Type.Null()])), nextRunAt: Type.Optional(Type.Union([Type.String({ format: 'date-time' }), Type.Null()])), enabled: Type.Optional(Type.Boolean()), probe: Type.Optional(ProbeSchema) }, { additionalProperties: false }),
      },
    }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const d = await drills.drills.get(v.id, req.params.drill);
      const b = req.body;
      const nextRunAt = b.nextRunAt !== undefined ? (b.nextRunAt === null ? null : new Date(b.nextRunAt).toISOString()) : b.intervalSeconds ? new Date(Date.now() + b.intervalSeconds * 1000).toISOString() : undefined;
      return view(await drills.drills.update(d, { ...(b.intervalSeconds !== undefined ? { intervalSeconds: b.intervalSeconds } : {}), ...(nextRunAt !== undefined ? { nextRunAt } : {}), ...(b.enabled !== undefined ? { enabled: b.enabled } : {}), ...(b.probe ? { probe: b.probe } : {}) }));
    });

    app.delete('/vaults/:vault/drills/:drill', { config: { permission: 'configure' }, schema: { summary: 'delete a drill and its runs', tags, params: DrillParams } }, async (req, reply) => {
      const v = await repos.vaults.get(req.params.vault);
      await drills.drills.delete(await drills.drills.get(v.id, req.params.drill));
      return reply.code(204).send();
    });

    app.post('/vaults/:vault/drills/:drill/run', { config: { permission: 'operate' }, schema: { summary: 'run a drill now', tags, params: DrillParams } }, async (req, reply) => {
      const v = await repos.vaults.get(req.params.vault);
      const run = await drills.runNow(await drills.drills.get(v.id, req.params.drill), 'request');
      return reply.code(202).header('location', `/api/v1/vaults/${req.params.vault}/jobs/${run.jobId}`).send(runView(run));
    });

    // "Last successful drill" per replication and per plan.
    for (const kind of ['replication', 'plan'] as const) {
      const path = kind === 'replication' ? 'replications' : 'recovery-plans';
      app.get(`/vaults/:vault/${path}/:${kind}/drill-status`, { schema: { summary: `the last drill and the last successful drill of a ${kind}`, tags, params: named(kind) } }, async (req) => {
        const params = req.params as Record<string, string>;
        const v = await repos.vaults.get(params.vault as string);
        const subject = params[kind] as string;
        if (kind === 'replication') await repos.replications.get(v.id, subject);
        else await repos.plans.get(v.id, subject);
        const { last, lastSuccessful } = await drills.drills.lastRuns(v.id, kind, subject);
        return { [kind]: subject, lastRun: last ? runView(last) : null, lastSuccessfulRun: lastSuccessful ? runView(lastSuccessful) : null };
      });
    }
  };
}
