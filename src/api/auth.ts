import type { FastifyRequest } from 'fastify';
import type { App } from './app.js';
import { RefugeError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { AuditRepository } from '../vault/security/audit.js';
import { allows, type Permission, type Principal } from '../vault/security/roles.js';
import type { UserRepository } from '../vault/security/users.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** What a caller needs for this route; `public` routes need no token. Set on every route (see `registerAuth`). */
    permission?: Permission | 'public';
    /** Whether a call is written to the audit log; default: every call that is not a read. */
    audit?: boolean;
  }
  interface FastifyRequest {
    principal: Principal | null;
  }
  interface FastifyInstance {
    /** Every route with the permission it needs, as registered (for docs and the access-control test). */
    routeTable: RouteEntry[];
  }
}

export interface RouteEntry {
  method: string;
  url: string;
  permission: Permission | 'public';
}

export interface AuthDeps {
  users: UserRepository;
  audit: AuditRepository;
  /** The id of the vault named in a path, or undefined if there is none (agent tokens are scoped by it). */
  vaultIdByName(name: string): Promise<string | undefined>;
  /** The vault of a replication id (for the replicator routes an agent token calls). */
  vaultIdOfReplication(id: string): Promise<string | undefined>;
  log: Logger;
}

const READS = new Set(['GET', 'HEAD']);

/**
 * Authentication and authorization on every route, and the audit log. Each route carries the permission it needs
 * (`config.permission`): reads default to `read`, the replicator's routes to `agent`, and any other route that
 * declares none stops the server from starting, so nothing is ever left open by omission. A request carries
 * `Authorization: Bearer <token>`; a missing or bad token answers 401, a role without the permission 403.
 */
export function registerAuth(app: App, deps: AuthDeps): void {
  app.decorateRequest('principal', null);
  const table: RouteEntry[] = [];
  app.decorate('routeTable', table);

  app.addHook('onRoute', (route) => {
    const config = (route.config ??= {});
    const methods = [route.method].flat();
    if (config.permission) {
      // already declared
    } else if (route.url.startsWith('/replicator/')) {
      config.permission = 'agent';
      config.audit = false;
    } else if (methods.every((m) => READS.has(m))) {
      config.permission = 'read';
    } else {
      throw new Error(`route ${methods.join(',')} ${route.url} declares no permission (config.permission)`);
    }
    for (const method of methods) table.push({ method, url: route.url, permission: config.permission });
  });

  app.addHook('onRequest', async (req) => {
    const permission = req.routeOptions.config.permission;
    if (permission === undefined || permission === 'public') return; // the not-found handler, login, health
    const header = req.headers.authorization ?? '';
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    const principal = m ? await deps.users.authenticate(m[1] as string) : undefined;
    if (!principal) {
      throw new RefugeError('unauthenticated', m ? 'the token is not valid (unknown, expired or revoked)' : 'this route needs a token (Authorization: Bearer ...)', {
        hint: 'log in with `refuge login`, or pass --token / REFUGE_TOKEN or --credentials / REFUGE_CREDENTIALS',
      });
    }
    req.principal = principal;
    if (!allows(principal.role, permission)) {
      throw new RefugeError('permission_denied', `${principal.name} (role ${principal.role}) may not do this: it needs the ${permission} permission`, {
        hint: permission === 'administer' ? 'only an owner may manage users and tokens' : 'ask an owner for a role that allows it',
      });
    }
    if (principal.vaultId !== null) await assertAgentScope(req, principal, deps);
  });

  app.addHook('onResponse', async (req, reply) => {
    const config = req.routeOptions.config;
    if (READS.has(req.method) || config.audit === false || config.permission === undefined) return;
    if (!req.principal && config.permission !== 'public') return; // refused before anything happened
    const params = (req.params ?? {}) as Record<string, string>;
    const { vault, ...rest } = params;
    const body = req.body && typeof req.body === 'object' && !Buffer.isBuffer(req.body) ? (req.body as Record<string, unknown>) : {};
    const location = reply.getHeader('location');
    await deps.audit
      .record({
        principal: req.principal?.name ?? (typeof body.user === 'string' ? `user:${body.user}` : 'anonymous'),
        role: req.principal?.role ?? null,
        action: `${req.method} ${req.routeOptions.url ?? req.url}`,
        vault: vault ?? null,
        target: Object.entries(rest).map(([k, v]) => `${k}=${v}`).join(' ') || null,
        status: reply.statusCode,
        details: { body, ...(typeof location === 'string' ? { location } : {}), ip: req.ip },
      })
      .catch((err: unknown) => deps.log.error({ err }, 'writing the audit log failed'));
  });
}

/** An agent token acts only in its own vault: the vault in the path, or the vault of the replication. */
async function assertAgentScope(req: FastifyRequest, principal: Principal, deps: AuthDeps): Promise<void> {
  const params = (req.params ?? {}) as Record<string, string>;
  let vaultId: string | undefined;
  if (params.vault) vaultId = await deps.vaultIdByName(params.vault);
  else if (params.replication) vaultId = await deps.vaultIdOfReplication(params.replication);
  if (vaultId !== principal.vaultId) {
    throw new RefugeError('permission_denied', `${principal.name} belongs to another vault`, { hint: 'create an agent token in this vault with `refuge token create --agent`' });
  }
}
