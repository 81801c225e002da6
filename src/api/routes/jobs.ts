import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { notFound } from '../../core/errors.js';
import { JOB_STATES } from '../../vault/jobs/definitions.js';
import type { AppDeps } from '../deps.js';
import { Id, Name, VaultParams } from './params.js';
import { Limit, page } from './paging.js';

const JobParams = Type.Object({ vault: Name, job: Id });

/** Jobs: list (newest first, paginated, filtered), show, and the job operations cancel, resume and restart. */
export function jobRoutes(deps: AppDeps): FastifyPluginAsync {
  const { repos, engine } = deps;
  const jobIn = async (vault: string, id: string) => {
    const v = await repos.vaults.get(vault);
    const job = await engine.get(id);
    if (job.vaultId !== v.id) throw notFound('job', id);
    return job;
  };
  const view = <J extends Parameters<typeof engine.allowed>[0]>(job: J) => ({ ...job, allowedOperations: engine.allowed(job) });

  return async (fastify) => {
    const app = fastify.withTypeProvider<TypeBoxTypeProvider>();

    app.get('/vaults/:vault/jobs', {
      schema: {
        params: VaultParams,
        querystring: Type.Object(
          {
            replication: Type.Optional(Name),
            state: Type.Optional(Type.Union(JOB_STATES.map((s) => Type.Literal(s)))),
            type: Type.Optional(Name),
            limit: Type.Optional(Limit),
            cursor: Type.Optional(Id),
          },
          { additionalProperties: false },
        ),
      },
    }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const replicationId = req.query.replication ? (await repos.replications.get(v.id, req.query.replication)).id : undefined;
      const limit = req.query.limit ? Number(req.query.limit) : 50;
      const items = await engine.list(v.id, {
        ...(replicationId ? { replicationId } : {}),
        ...(req.query.state ? { state: req.query.state } : {}),
        ...(req.query.type ? { type: req.query.type } : {}),
        ...(req.query.cursor ? { before: req.query.cursor } : {}),
        limit,
      });
      return page(items.map(view), limit, (j) => j.id);
    });

    app.get('/vaults/:vault/jobs/:job', { schema: { params: JobParams } }, async (req) => view(await jobIn(req.params.vault, req.params.job)));

    app.post('/vaults/:vault/jobs/:job/cancel', { config: { permission: 'operate' }, schema: { params: JobParams } }, async (req, reply) => {
      await jobIn(req.params.vault, req.params.job);
      return reply.code(202).send(view(await engine.cancel(req.params.job)));
    });

    app.post('/vaults/:vault/jobs/:job/resume', {
      config: { permission: 'operate' },
      schema: {
        params: JobParams,
        body: Type.Object(
          { approved: Type.Boolean(), comment: Type.Optional(Type.String({ maxLength: 2000 })) },
          { additionalProperties: false, description: 'the answer to the task waiting for input (a manual approval)' },
        ),
      },
    }, async (req, reply) => {
      await jobIn(req.params.vault, req.params.job);
      const input = { ...req.body, by: req.principal?.name ?? null, at: new Date().toISOString() };
      return reply.code(202).send(view(await engine.resume(req.params.job, input)));
    });

    app.post('/vaults/:vault/jobs/:job/restart', { config: { permission: 'operate' }, schema: { params: JobParams } }, async (req, reply) => {
      await jobIn(req.params.vault, req.params.job);
      return reply.code(202).send(view(await engine.restart(req.params.job)));
    });
  };
}
