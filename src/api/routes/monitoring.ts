import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { redactSecrets } from '../../vault/security/audit.js';
import type { AlertChannelConfig } from '../../vault/monitoring/alerts.js';
import { ALERT_KINDS } from '../../vault/monitoring/channels/channel.js';
import { SEVERITIES } from '../../vault/monitoring/events.js';
import { channelFor } from '../../vault/monitoring/notifier.js';
import type { AppDeps } from '../deps.js';
import { Id, Name, VaultParams, named } from './params.js';
import { Limit, page } from './paging.js';

const literal = <T extends string>(values: readonly T[]) => Type.Union(values.map((v) => Type.Literal(v)));
const Severity = literal(SEVERITIES);
const Pem = Type.String({ maxLength: 20_000 });
const WebhookConfig = Type.Object({ url: Type.String({ pattern: '^https?://', maxLength: 2048 }), secret: Type.Optional(Type.String({ maxLength: 500 })), ca: Type.Optional(Pem) }, { additionalProperties: false });
const SmtpConfig = Type.Object(
  {
    host: Type.String({ minLength: 1, maxLength: 253 }),
    port: Type.Integer({ minimum: 1, maximum: 65535 }),
    secure: Type.Optional(Type.Boolean()),
    requireTls: Type.Optional(Type.Boolean()),
    user: Type.Optional(Type.String({ maxLength: 500 })),
    password: Type.Optional(Type.String({ maxLength: 500 })),
    from: Type.String({ format: 'email' }),
    to: Type.Array(Type.String({ format: 'email' }), { minItems: 1, maxItems: 50 }),
    ca: Type.Optional(Pem),
  },
  { additionalProperties: false },
);
const channelView = (c: AlertChannelConfig) => ({ name: c.name, kind: c.kind, minSeverity: c.minSeverity, config: redactSecrets(c.config), createdAt: c.createdAt });

/** Events, alerts, and the channels alerts are sent to. */
export function monitoringRoutes(deps: AppDeps): FastifyPluginAsync {
  const { repos } = deps;
  const { events, alerts, channels } = deps.monitoring;
  return async (fastify) => {
    const app = fastify.withTypeProvider<TypeBoxTypeProvider>();

    app.get('/vaults/:vault/events', {
      schema: {
        params: VaultParams,
        querystring: Type.Object(
          { type: Type.Optional(Type.String({ pattern: '^[a-z.-]{1,64}$' })), severity: Type.Optional(Severity), subject: Type.Optional(Type.String({ maxLength: 200 })), since: Type.Optional(Type.String({ format: 'date-time' })), limit: Type.Optional(Limit), cursor: Type.Optional(Id) },
          { additionalProperties: false },
        ),
      },
    }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const q = req.query;
      const limit = q.limit ? Number(q.limit) : 100;
      const items = await events.list(v.id, { ...(q.type ? { type: q.type } : {}), ...(q.severity ? { severity: q.severity } : {}), ...(q.subject ? { subject: q.subject } : {}), ...(q.since ? { since: q.since } : {}), ...(q.cursor ? { before: q.cursor } : {}), limit });
      return page(items, limit, (e) => e.id);
    });

    app.get('/vaults/:vault/alerts', {
      schema: {
        params: VaultParams,
        querystring: Type.Object(
          { state: Type.Optional(literal(['active', 'resolved'] as const)), kind: Type.Optional(literal(ALERT_KINDS)), subject: Type.Optional(Type.String({ maxLength: 200 })), limit: Type.Optional(Limit), cursor: Type.Optional(Id) },
          { additionalProperties: false },
        ),
      },
    }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const q = req.query;
      const limit = q.limit ? Number(q.limit) : 100;
      const items = await alerts.list(v.id, { ...(q.state ? { state: q.state } : {}), ...(q.kind ? { kind: q.kind } : {}), ...(q.subject ? { subject: q.subject } : {}), ...(q.cursor ? { before: q.cursor } : {}), limit });
      return page(items, limit, (a) => a.id);
    });

    app.get('/vaults/:vault/alerts/:alert', { schema: { params: Type.Object({ vault: Name, alert: Id }) } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      return alerts.get(v.id, req.params.alert);
    });

    app.get('/vaults/:vault/alert-channels', { schema: { params: VaultParams } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      return { items: (await channels.list(v.id)).map(channelView) };
    });

    app.post('/vaults/:vault/alert-channels', {
      config: { permission: 'configure' },
      schema: {
        params: VaultParams,
        body: Type.Union([
          Type.Object({ name: Name, kind: Type.Literal('webhook'), minSeverity: Type.Optional(Severity), config: WebhookConfig }, { additionalProperties: false }),
          Type.Object({ name: Name, kind: Type.Literal('smtp'), minSeverity: Type.Optional(Severity), config: SmtpConfig }, { additionalProperties: false }),
        ]),
      },
    }, async (req, reply) => {
      const v = await repos.vaults.get(req.params.vault);
      const c = await channels.create({ vaultId: v.id, name: req.body.name, kind: req.body.kind, config: req.body.config, minSeverity: req.body.minSeverity ?? 'warning' });
      return reply.code(201).send(channelView(c));
    });

    app.get('/vaults/:vault/alert-channels/:channel', { schema: { params: named('channel') } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      return channelView(await channels.get(v.id, req.params.channel));
    });

    app.delete('/vaults/:vault/alert-channels/:channel', { config: { permission: 'configure' }, schema: { params: named('channel') } }, async (req, reply) => {
      const v = await repos.vaults.get(req.params.vault);
      await channels.delete(await channels.get(v.id, req.params.channel));
      return reply.code(204).send();
    });

    /** Sends a test notice through the channel now and says whether it was accepted. */
    app.post('/vaults/:vault/alert-channels/:channel/test', { config: { permission: 'configure' }, schema: { params: named('channel') } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const c = await channels.get(v.id, req.params.channel);
      const now = new Date().toISOString();
      await channelFor(c).send(
        { id: `test:${now}`, transition: 'raised', vault: v.name, alert: { id: 'test', kind: 'readiness-worsened', subject: c.name, severity: 'info', message: 'test notice from refuge', firstAt: now, resolvedAt: null } },
        AbortSignal.timeout(30_000),
      );
      return { delivered: true, channel: c.name, kind: c.kind, at: now };
    });
  };
}
