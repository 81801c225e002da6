import Fastify, { LogController, type FastifyError } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { HTTP_STATUS, RefugeError } from '../core/errors.js';
import type { HttpConnection } from '../core/http-client.js';
import { silentLogger, type Logger } from '../core/log.js';
import { MAX_REPLICATION_CHUNK_SIZE } from '../protocol/chunk-encoding.js';
import { pointRecord, type ReplicationStats, type ReplicatorReportResponse, type StoreFull } from '../protocol/replicator-vault.js';
import { openSiteStore } from '../store/open-store.js';
import type { ReplicaStore } from '../store/replica-store.js';
import { Replicator, type ReplicationTarget, type TargetResolver } from './replicator.js';
import { replicatorRoutes } from './routes.js';
import { VaultLink } from './vault-link.js';
import { agentCertificateHook } from './client-auth.js';

export const REPLICATOR_VERSION = '0.2.0';

export interface StandaloneReplicatorOptions {
  vaultUrl: string;
  vault: string;
  /** The site whose replica store this replicator commits to (the target site of the replications it serves). */
  site: string;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** The URL agents use to reach this replicator, when it differs from the listening address (a proxy, NAT). */
  publicUrl?: string;
  /** The store's path on this host, when the site's store is mounted elsewhere here than at the vault. */
  storePath?: string;
  /**
   * The replicator's registered identity: its certificate (issued by the vault CA, for its host names) serves HTTPS
   * to agents and authenticates it to the vault; `issuingCa` is what agents' certificates must chain to.
   */
  tls: ReplicatorTls;
  /** Renews the certificate when due (checked at each report); the server and the vault link switch to the new one. */
  renewal?: { due(): boolean; renew(): Promise<ReplicatorTls> };
  log?: Logger;
}

export interface ReplicatorTls {
  connection: Required<Pick<HttpConnection, 'ca' | 'cert' | 'key'>>;
  issuingCa: string;
}

export interface StandaloneReplicator {
  url: string;
  replicator: Replicator;
  /** Reports to the vault now (also done every interval the vault asks for). */
  report(): Promise<ReplicatorReportResponse>;
  close(): Promise<void>;
}

/**
 * `refuge replicator`: the replicator as its own process, for scale (the vault keeps an in-process one by default).
 * It listens for agents, commits to the site's replica store, and talks to the vault outbound only: it reports
 * itself every interval (registering it, so agents replicating to the site are sent here, and carrying per-
 * replication churn, backlog and commit lag), asks whether a replication may send data, and records each point it
 * commits. If it stops reporting, agents fall back to the vault's own replicator, which uses the same store.
 */
export async function startStandaloneReplicator(o: StandaloneReplicatorOptions): Promise<StandaloneReplicator> {
  const log = o.log ?? silentLogger;
  const link = new VaultLink(o.vaultUrl, o.vault, o.site, o.tls.connection);
  let store: ReplicaStore | undefined;
  const lastCommit = new Map<string, { at: string; lagSeconds: number }>();
  const allowed = new Map<string, { ok: boolean; chunkSizeKiB: number | null; until: number }>();
  /** The store's last refusal for lack of space, told to the vault (which alerts) until a commit goes through. */
  let storeFull: StoreFull | null = null;

  const targets: TargetResolver = {
    async resolve(replicationId): Promise<ReplicationTarget> {
      if (!store) throw new RefugeError('unavailable', 'the replicator has not reached the vault yet', { retryable: true });
      let verdict = allowed.get(replicationId);
      if (!verdict || verdict.until < Date.now()) {
        const info = await link.target(replicationId);
        verdict = { ok: info.accepting, chunkSizeKiB: info.chunkSizeKiB ?? null, until: Date.now() + 5000 }; // a state change (failover) takes effect within 5 s
        allowed.set(replicationId, verdict);
      }
      if (!verdict.ok) {
        throw new RefugeError('operation_not_allowed', `replication ${replicationId} does not replicate to site '${o.site}' now`, { details: { allowedOperations: [] } });
      }
      return {
        store,
        chunkSize: verdict.chunkSizeKiB !== null ? verdict.chunkSizeKiB * 1024 : store.chunkSize,
        async onStoreFull(err) {
          storeFull = { replication: replicationId, message: err.message, ...(err.hint ? { hint: err.hint } : {}), at: new Date().toISOString() };
          reportSoon();
        },
        async onCommitted(m, stats) {
          storeFull = null;
          await link.recordPoint(pointRecord(m));
          lastCommit.set(m.replicationId, { at: m.committedAt, lagSeconds: stats.commitLagSeconds });
          reportSoon();
        },
      };
    },
  };
  const replicator = new Replicator(targets, log);

  const app = Fastify({
    loggerInstance: log,
    https: { cert: o.tls.connection.cert, key: o.tls.connection.key, ca: o.tls.issuingCa, requestCert: true, rejectUnauthorized: false },
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1024 * 1024,
    // As the vault's API: reject rather than repair (coercion would turn a null parent into '').
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: true, allErrors: false } },
  }).withTypeProvider<TypeBoxTypeProvider>();
  app.setErrorHandler((err: FastifyError, req, reply) => {
    const e = err instanceof RefugeError ? err
      : err.validation ? new RefugeError('invalid_argument', err.message)
      : err.code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? new RefugeError('payload_too_large', `request body is too large (this route takes at most ${req.routeOptions.bodyLimit ?? '?'} bytes)`)
      : err.statusCode !== undefined && err.statusCode < 500 ? new RefugeError('invalid_argument', err.message)
      : new RefugeError('internal', 'internal error', { cause: err });
    if (e.code === 'internal') log.error({ err }, 'replicator request failed');
    return reply.code(HTTP_STATUS[e.code]).send({ error: { ...e.details, code: e.code, message: e.message, ...(e.hint ? { hint: e.hint } : {}) } });
  });
  app.addHook('onRequest', agentCertificateHook(async (replicationId, fingerprint) => (await link.target(replicationId, fingerprint)).agentRefused));
  await app.register(replicatorRoutes(replicator, MAX_REPLICATION_CHUNK_SIZE), { prefix: '/replicator/v1' });
  app.get('/replicator/v1/health', async () => ({ status: store ? 'ok' : 'waiting-for-vault', time: new Date().toISOString() }));
  const host = o.host ?? '127.0.0.1';
  let address: string;
  try {
    address = await app.listen({ host, port: o.port ?? 0 });
  } catch (err) {
    throw RefugeError.wrap(err, `replicator cannot listen on ${host}:${o.port ?? 0}`, 'unavailable');
  }
  const url = o.publicUrl ?? `${address.replace('[::1]', 'localhost')}/replicator/v1`;

  const stats = (): ReplicationStats[] =>
    [...replicator.counters].map(([replicationId, c]) => ({
      replicationId,
      pointsCommitted: c.pointsCommitted,
      bytesReceived: c.bytesReceived,
      wireBytesReceived: c.wireBytesReceived,
      pendingBytes: c.pendingBytes,
      lastCommittedAt: lastCommit.get(replicationId)?.at ?? null,
      lastCommitLagSeconds: lastCommit.get(replicationId)?.lagSeconds ?? null,
    }));
  const report = async () => {
    const r = await link.report({ url, version: REPLICATOR_VERSION, replications: stats(), storeFull });
    if (!store) {
      // A filesystem store may be mounted at another path on this host than at the vault.
      store = await openSiteStore(r.store.kind === 'filesystem' && o.storePath ? { ...r.store, path: o.storePath } : r.store, { create: r.storeHoldsPoints !== true });
      log.info({ site: r.site, store: store.backend.location }, 'replicator registered with the vault');
    }
    return r;
  };

  let timer: NodeJS.Timeout | undefined;
  let soon: NodeJS.Timeout | undefined;
  let stopped = false;
  /** After a commit: the vault's view of churn and lag is refreshed within a second, not at the next interval. */
  const reportSoon = () => {
    soon ??= setTimeout(() => {
      soon = undefined;
      if (!stopped) report().catch((err: unknown) => log.warn({ err }, 'cannot report to the vault'));
    }, 1000);
  };
  const renewIfDue = async () => {
    if (!o.renewal?.due()) return;
    try {
      const next = await o.renewal.renew();
      app.server.setSecureContext({ cert: next.connection.cert, key: next.connection.key, ca: next.issuingCa });
      link.connection = next.connection;
      log.info('replicator certificate renewed');
    } catch (err) {
      log.warn({ err }, 'renewing the replicator certificate failed; retrying at the next report');
    }
  };
  const loop = async () => {
    let intervalSeconds = 10;
    await renewIfDue();
    try {
      intervalSeconds = (await report()).reportIntervalSeconds;
    } catch (err) {
      log.warn({ err }, 'cannot report to the vault; retrying');
      intervalSeconds = store ? intervalSeconds : 2;
    }
    if (!stopped) timer = setTimeout(() => void loop(), intervalSeconds * 1000);
  };
  await loop();
  log.info({ url }, 'replicator listening');

  return {
    url,
    replicator,
    report,
    async close() {
      stopped = true;
      clearTimeout(timer);
      clearTimeout(soon);
      await app.close();
    },
  };
}
