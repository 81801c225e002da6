import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { PLAN_OPERATIONS, PLAN_POINT_CHOICES, type PlanOperation } from '../../orchestration/plans/plan-operations.js';
import type { AppDeps } from '../deps.js';
import { named } from './params.js';

const PlanParams = named('plan');
const Override = Type.Object({ reason: Type.String({ minLength: 3, maxLength: 2000 }) }, { additionalProperties: false, description: "an owner's reason to go ahead although a readiness check failed" });
const OperationName = Type.Union(PLAN_OPERATIONS.map((o) => Type.Literal(o)));

/**
 * Running recovery plans (their configuration is CRUD in topology.ts): one route per plan operation, each
 * answering 202 with the plan's job (its tasks are the groups and actions in order); a dry-run; the plan's jobs.
 * A manual action parks the job as `waiting`; it is approved or rejected with `POST /vaults/:vault/jobs/:job/resume`
 * `{ approved, comment }`.
 */
export function planRoutes(deps: AppDeps): FastifyPluginAsync {
  const { repos, plans, engine } = deps;
  return async (fastify) => {
    const app = fastify.withTypeProvider<TypeBoxTypeProvider>();

    for (const operation of PLAN_OPERATIONS) {
      app.post(`/vaults/:vault/recovery-plans/:plan/${operation}`, {
        config: { permission: 'operate' },
        schema: {
          summary: `run ${operation} on every machine of a recovery plan, group by group, with the groups' actions`,
          tags: ['recovery plans'],
          params: PlanParams,
          body: Type.Union([
            Type.Object(
              {
                point: Type.Optional(Type.Union(PLAN_POINT_CHOICES.map((c) => Type.Literal(c)), { description: 'point choice for every machine (test failover, failover)' })),
                override: Type.Optional(Override),
              },
              { additionalProperties: false },
            ),
            Type.Null(),
          ]),
        },
      }, async (req, reply) => {
        const body = req.body ?? {};
        const job = await plans.request(req.params.vault, req.params.plan, operation, { ...body, principal: req.principal });
        return reply.code(202).header('location', `/api/v1/vaults/${req.params.vault}/jobs/${job.id}`).send({ ...job, allowedOperations: engine.allowed(job) });
      });
    }

    app.post('/vaults/:vault/recovery-plans/:plan/dry-run', {
      // Changes nothing but the readiness report it records: a reader may run it, as an on-demand check.
      config: { permission: 'read', audit: false },
      schema: {
        summary: 'what a plan operation would do: order, capacity needed against free, addresses, and what blocks it',
        tags: ['recovery plans'],
        params: PlanParams,
        body: Type.Object({ operation: OperationName }, { additionalProperties: false }),
      },
    }, async (req) => plans.dryRun(req.params.vault, req.params.plan, req.body.operation as PlanOperation, req.principal));

    app.get('/vaults/:vault/recovery-plans/:plan/jobs', {
      schema: {
        summary: "the plan's jobs, newest first",
        tags: ['recovery plans'],
        params: PlanParams,
        querystring: Type.Object({ limit: Type.Optional(Type.String({ pattern: '^([1-9]|[1-9][0-9])$' })) }, { additionalProperties: false }),
      },
    }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const plan = await repos.plans.get(v.id, req.params.plan);
      const jobs = await plans.jobs(v, plan, req.query.limit ? Number(req.query.limit) : 20);
      return { items: jobs.map((j) => ({ ...j, allowedOperations: engine.allowed(j), waitingFor: j.tasks.find((t) => t.state === 'waiting')?.message ?? null })) };
    });
  };
}
