import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { notFound } from '../../core/errors.js';
import { JOB_STATES } from '../../vault/jobs/definitions.js';
import type { AppDeps } from '../deps.js';
import { Id, Name, VaultParams } from './params.js';

export function jobRoutes(deps: AppDeps): FastifyPluginAsync {
  const { repos, engine } = deps;
  return async (fastify) => {
    const app = fastify.withTypeProvider<TypeBoxTypeProvider>();

    app.get('/vaults/:vault/jobs', {
      schema: {
        params: VaultParams,
        querystring: Type.Object(
          {
            replication: Type.Optional(Name),
            state: Type.Optional(Type.Union(JOB_STATES.map((s) => Type.Literal(s)))),
            limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$' })),
          },
          { additionalProperties: false },
        ),
      },
    }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const replicationId = req.query.replication ? (await repos.replications.get(v.id, req.query.replication)).id : undefined;
      const items = await engine.list(v.id, {
        ...(replicationId ? { replicationId } : {}),
        ...(req.query.state ? { state: req.query.state } : {}),
        limit: req.query.limit ? Number(req.query.limit) : 50,
      });
      return { items };
    });

    app.get('/vaults/:vault/jobs/:job', { schema: { params: Type.Object({ vault: Name, job: Id }) } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const job = await engine.get(req.params.job);
      if (job.vaultId !== v.id) throw notFound('job', req.params.job);
      return job;
    });
  };
}
