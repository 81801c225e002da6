import type { TLSSocket } from 'node:tls';
import type { FastifyRequest } from 'fastify';
import type { App } from './app.js';
import { REGISTER_HINT, verifiedClientCertificate } from '../core/client-certificate.js';
import { RefugeError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { AuditRepository } from '../vault/security/audit.js';
import { allows, type Permission, type Principal } from '../vault/security/roles.js';
import type { UserRepository } from '../vault/security/users.js';
import type { AgentIdentityRepository } from '../vault/security/agent-identities.js';

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
  identities: AgentIdentityRepository;
  audit: AuditRepository;
  /** The id of the vault named in a path, or undefined if there is none (agent tokens are scoped by it). */
  vaultIdByName(name: string): Promise<string | undefined>;
  /** The vault and machine of a replication id (for the replicator routes an agent calls). */
  replicationOwner(id: string): Promise<{ vaultId: string; machineId: string; machineName: string } | undefined>;
  log: Logger;
}

const READS = new Set(['GET', 'HEAD']);

/**
 * Authentication and authorization on every route, and the audit log. Each route carries the permission it needs
 * (`config.permission`): reads default to `read`, the replicator's routes to `agent`, and any other route that
 * declares none stops the server from starting, so nothing is ever left open by omission. Users send
 * `Authorization: Bearer <token>`; a missing or bad token answers 401, a role without the permission 403. Agents
 * and standalone replicators authenticate by mutual TLS on the `agent` routes: a client certificate this vault
 * issued (and has not revoked) maps to its machine or site; an expired or foreign certificate answers 401 saying so.
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
    const byCertificate = permission === 'agent' ? await certificatePrincipal(req, deps) : undefined;
    if (byCertificate) {
      req.principal = byCertificate;
      await assertAgentScope(req, byCertificate, deps);
      return;
    }
    const header = req.headers.authorization ?? '';
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    const principal = m ? await deps.users.authenticate(m[1] as string) : undefined;
    if (!principal) {
      if (permission === 'agent' && !m) {
        throw new RefugeError('unauthenticated', 'this route needs a client certificate issued by this vault (agents and replicators use mutual TLS)', {
          hint: 'register the agent with `refuge agent register` (a key from `refuge agent key create`); it then presents its certificate',
        });
      }
      throw new RefugeError('unauthenticated', m ? 'the token is not valid (unknown, expired or revoked)' : 'this route needs a token (Authorization: Bearer ...)', {
        hint: 'log in with `refuge login`, or pass --token / REFUGE_TOKEN or --credentials / REFUGE_CREDENTIALS',
      });
    }
    if (principal.kind === 'agent') {
      throw new RefugeError('unauthenticated', 'agent tokens no longer authenticate agents or replicators: they use client certificates (mutual TLS)', {
        hint: 'register the agent with `refuge agent register` using a key from `refuge agent key create`',
      });
    }
    req.principal = principal;
    if (!allows(principal.role, permission)) {
      throw new RefugeError('permission_denied', `${principal.name} (role ${principal.role}) may not do this: it needs the ${permission} permission`, {
        hint: permission === 'administer' ? 'only an owner may manage users and tokens' : 'ask an owner for a role that allows it',
      });
    }
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

/**
 * The agent or replicator a verified client certificate stands for; undefined when none was presented (plain HTTP,
 * an in-process request, or a TLS client without one). A certificate that is expired, from another CA, unknown,
 * revoked, or whose machine was removed is refused with the reason.
 */
async function certificatePrincipal(req: FastifyRequest, deps: AuthDeps): Promise<Principal | undefined> {
  const peer = verifiedClientCertificate(req.raw.socket as Partial<TLSSocket>);
  if (!peer) return undefined;
  const register = REGISTER_HINT;
  const issued = await deps.identities.byFingerprint(peer.fingerprint256);
  if (!issued) throw new RefugeError('unauthenticated', 'the client certificate is signed by this vault\'s CA but was not issued to any agent', { hint: register });
  if (!issued.revokedAt && issued.machineId && !(await deps.identities.machineExists(issued.machineId))) await deps.identities.revoke(issued.id);
  else if (!issued.revokedAt) {
    return {
      kind: 'agent',
      name: `${issued.kind}:${issued.name}`,
      role: 'agent',
      vaultId: issued.vaultId,
      tokenId: issued.id,
      identity: { kind: issued.kind, name: issued.name, siteId: issued.siteId, machineId: issued.machineId, certificateId: issued.id },
    };
  }
  throw new RefugeError('unauthenticated', `the client certificate of ${issued.kind} '${issued.name}' is revoked (its machine was removed, or it was renewed)`, {
    hint: register,
    details: { certificate: 'revoked' },
  });
}

/**
 * An agent or replicator acts only in its own vault, and only as itself: a machine's certificate on its machine's
 * agent routes and its replication's uploads, a replicator's on its site's replicator routes.
 */
async function assertAgentScope(req: FastifyRequest, principal: Principal, deps: AuthDeps): Promise<void> {
  const params = (req.params ?? {}) as Record<string, string>;
  let vaultId: string | undefined;
  let owner: { vaultId: string; machineId: string; machineName: string } | undefined;
  if (params.vault) vaultId = await deps.vaultIdByName(params.vault);
  else if (params.replication) vaultId = (owner = await deps.replicationOwner(params.replication))?.vaultId;
  if (vaultId !== principal.vaultId) {
    throw new RefugeError('permission_denied', `${principal.name} belongs to another vault`, { hint: 'register the agent with this vault (`refuge agent register`)' });
  }
  const id = principal.identity;
  if (!id) return;
  const url = req.routeOptions.url ?? '';
  const wrong = (what: string) => new RefugeError('permission_denied', `${principal.name} may not act ${what}`, { hint: 'each agent acts for its own machine, each replicator for its own site' });
  if (url.includes('/replicators/')) {
    if (id.kind !== 'replicator' || params.site !== id.name) throw wrong(`as the replicator of site '${params.site ?? ''}'`);
  } else if (url.endsWith('/agents/renew')) {
    // either kind renews its own certificate
  } else if (id.kind !== 'machine') {
    throw wrong('as an agent');
  } else if (params.machine !== undefined && params.machine !== id.name) {
    throw wrong(`for machine '${params.machine}'`);
  } else if (owner && (id.machineId ? id.machineId !== owner.machineId : id.name !== owner.machineName)) {
    throw wrong('for the replication of another machine');
  }
}
