import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { RefugeError } from '../../core/errors.js';
import { ROLES } from '../../vault/security/roles.js';
import type { AppDeps } from '../deps.js';
import { FailureLimiter } from '../rate-limit.js';
import { Id, Name } from './params.js';
import { Limit, page } from './paging.js';

const Role = Type.Union(ROLES.map((r) => Type.Literal(r)));
const Password = Type.String({ minLength: 12, maxLength: 1024 });

/** Logging in, users, tokens, and the audit log. Everything here but login needs the owner's `administer`. */
export function accessRoutes(deps: AppDeps): FastifyPluginAsync {
  const { users, audit } = deps;
  // 5 failed logins per address and user name in 15 minutes, 20 per address: then 429 until the window passes.
  const perUser = new FailureLimiter(5, 15 * 60_000);
  const perAddress = new FailureLimiter(20, 15 * 60_000);

  return async (fastify) => {
    const app = fastify.withTypeProvider<TypeBoxTypeProvider>();

    app.post('/auth/login', {
      config: { permission: 'public' },
      schema: { body: Type.Object({ user: Name, password: Type.String({ maxLength: 1024 }) }, { additionalProperties: false }) },
    }, async (req, reply) => {
      const keys = [`${req.ip}|${req.body.user}`, req.ip];
      const wait = Math.max(perUser.retryAfter(keys[0] as string), perAddress.retryAfter(keys[1] as string));
      if (wait > 0) {
        void reply.header('retry-after', String(wait));
        throw new RefugeError('too_many_requests', `too many failed logins; try again in ${wait} s`, { details: { retryAfterSeconds: wait } });
      }
      const user = await users.verifyPassword(req.body.user, req.body.password);
      if (!user) {
        perUser.fail(keys[0] as string);
        perAddress.fail(keys[1] as string);
        throw new RefugeError('unauthenticated', 'wrong user name or password');
      }
      perUser.succeed(keys[0] as string);
      const { token, info } = await users.issueToken({ user, name: `login ${new Date().toISOString()}`, kind: 'session' });
      return reply.code(201).send({ token, user: user.name, role: user.role, expiresAt: info.expiresAt });
    });

    app.get('/auth/whoami', async (req) => ({ ...req.principal }));

    app.get('/users', { config: { permission: 'administer' } }, async () => ({ items: await users.list() }));
    app.post('/users', {
      config: { permission: 'administer' },
      schema: { body: Type.Object({ name: Name, password: Password, role: Role }, { additionalProperties: false }) },
    }, async (req, reply) => reply.code(201).send(await users.create(req.body.name, req.body.password, req.body.role)));
    app.patch('/users/:user', {
      config: { permission: 'administer' },
      schema: {
        params: Type.Object({ user: Name }),
        body: Type.Object({ role: Type.Optional(Role), password: Type.Optional(Password), disabled: Type.Optional(Type.Boolean()) }, { additionalProperties: false }),
      },
    }, async (req) => users.update(req.params.user, req.body));

    app.get('/tokens', { config: { permission: 'administer' } }, async () => ({ items: await users.listTokens() }));
    app.post('/tokens', {
      config: { permission: 'administer' },
      schema: {
        body: Type.Object(
          {
            name: Name,
            /** Retired (agents use client certificates); refused with a hint, so old scripts learn why. */
            agentVault: Type.Optional(Name),
            user: Type.Optional(Name),
            role: Type.Optional(Role),
            expiresInDays: Type.Optional(Type.Integer({ minimum: 1, maximum: 3650 })),
          },
          { additionalProperties: false },
        ),
      },
    }, async (req, reply) => {
      const b = req.body;
      const expiresAt = b.expiresInDays ? new Date(Date.now() + b.expiresInDays * 86400_000).toISOString() : null;
      if (b.agentVault) {
        throw new RefugeError('invalid_argument', 'agent tokens are retired: agents and replicators authenticate with client certificates (mutual TLS)', {
          details: { field: '/body/agentVault' },
          hint: 'create a one-time registration key with `refuge agent key create --write FILE` and register with `refuge agent register`',
        });
      }
      const user = await users.get(b.user ?? (req.principal?.name ?? '').replace(/^user:/, ''));
      return reply.code(201).send(await users.issueToken({ user, name: b.name, kind: 'api', ...(b.role ? { role: b.role } : {}), expiresAt }));
    });
    app.delete('/tokens/:token', { config: { permission: 'administer' }, schema: { params: Type.Object({ token: Id }) } }, async (req, reply) => {
      await users.revokeToken(req.params.token);
      return reply.code(204).send();
    });

    app.get('/audit', {
      config: { permission: 'administer' },
      schema: { querystring: Type.Object({ vault: Type.Optional(Name), limit: Type.Optional(Limit), cursor: Type.Optional(Id) }, { additionalProperties: false }) },
    }, async (req) => {
      const limit = req.query.limit ? Number(req.query.limit) : 100;
      const items = await audit.list({ ...(req.query.vault ? { vault: req.query.vault } : {}), ...(req.query.cursor ? { before: req.query.cursor } : {}), limit });
      return page(items, limit, (e) => e.id);
    });
  };
}
