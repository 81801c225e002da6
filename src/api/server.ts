import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '../core/atomic-file.js';
import { RefugeError } from '../core/errors.js';
import { createLogger, type Logger } from '../core/log.js';
import { createJobDefinitions } from '../orchestration/jobs/definitions.js';
import { OperationService } from '../orchestration/operations.js';
import { SiteResources } from '../orchestration/site-resources.js';
import { Replicator, type TargetResolver } from '../replicator/replicator.js';
import { openDatabase } from '../vault/db/connect.js';
import { storeFullAlert, storeFullSubject } from '../vault/monitoring/store-full.js';
import { pointRecord } from '../protocol/replicator-vault.js';
import { JobEngine } from '../vault/jobs/engine.js';
import { holdTasks } from '../vault/jobs/faults.js';
import { createRepositories, type VaultRepositories } from '../vault/repositories/index.js';
import { isReplicating } from '../vault/replication-state.js';
import type { FabricProvider } from '../fabric/provider.js';
import { replicationChunkSize, type Site } from '../vault/model.js';
import { buildApp, type App } from './app.js';
import { VaultMetrics } from './metrics.js';
import type { AppDeps } from './deps.js';
import { defaultDatabaseUrl, loadIssuingCa, loadServerTls, vaultKeyPath } from './vault-init.js';
import { AgentIdentityRepository } from '../vault/security/agent-identities.js';
import { ReadinessService } from '../vault/readiness/service.js';
import { existsSync, statSync } from 'node:fs';
import { AuditRepository } from '../vault/security/audit.js';
import { UserRepository } from '../vault/security/users.js';
import { certificateFacts } from '../vault/security/pki.js';
import { AlertChannelRepository, AlertRepository } from '../vault/monitoring/alerts.js';
import { EventRepository } from '../vault/monitoring/events.js';
import { Monitor } from '../vault/monitoring/monitor.js';
import { Notifier } from '../vault/monitoring/notifier.js';

const EVENT_RETENTION_DAYS = 30;
import { ReplicatorRegistry } from './replicator-registry.js';
import { DEFAULT_GROUP_CUT_SETTINGS, GroupCutCoordinator, type GroupCutSettings } from '../vault/group-cuts.js';
import { planJobDefinitions } from '../orchestration/plans/plan-job.js';
import { PlanService } from '../orchestration/plans/plan-service.js';
import { drillJobDefinition, type DrillJobDeps } from '../orchestration/drills/drill-job.js';
import type { JobDefinition } from '../vault/jobs/definitions.js';
import { DrillRepository } from '../orchestration/drills/drill-repository.js';
import { RetentionService } from '../orchestration/retention.js';
import { DrillService } from '../orchestration/drills/drill-service.js';

export interface VaultServerOptions {
  /** Folder for the database, the sites' stores and machines (unless configured elsewhere). */
  dataDir: string;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Database URL; defaults to SQLite in the data folder. */
  databaseUrl?: string;
  log?: Logger;
  /** Names this process in job leases; defaults to an id kept in the data folder, so a restart reclaims its jobs. */
  instanceId?: string;
  /** How long a job lease holds without renewal (default 30 s): how soon another process takes over a dead one's jobs. */
  jobLeaseSeconds?: number;
  /** How often health is evaluated into alerts (default 30 s); 0 turns the monitor and the notifier off (tests). */
  monitorIntervalMs?: number;
  /** How often every readiness check runs for every replication (default 1 h). */
  readinessIntervalMs?: number;
  /** Test-only fault injection: tasks with these names hold until their job is aborted (see vault/jobs/faults.ts). */
  holdTasks?: string[];
  /** Serve plain HTTP (e.g. behind a TLS-terminating proxy); by default the vault serves HTTPS only. */
  insecureHttp?: boolean;
  /** Replaces the fabric provider of every site (tests). */
  fabricFor?: (site: Site) => FabricProvider;
  /** Consistency-group cut timing (vault/group-cuts.ts); `minIntervalSeconds: 0` leaves only cuts opened on request. */
  groupCuts?: Partial<GroupCutSettings>;
  /** How often the drill scheduler looks for due drills (default 5 s). */
  drillPollMs?: number;
  /** How often policies' retention prunes recovery points (default 10 min); 0 turns it off (tests run passes). */
  retentionIntervalMs?: number;
}

export interface VaultServer {
  url: string;
  app: App;
  repos: VaultRepositories;
  engine: JobEngine;
  replicator: Replicator;
  monitoring: AppDeps['monitoring'];
  readiness: ReadinessService;
  /** The sites' fabric providers, stores and instantly served recovery points. */
  sites: SiteResources;
  plans: PlanService;
  drills: DrillService;
  retention: RetentionService;
  close(): Promise<void>;
}

/** Where the in-process replicator finds each replication's store, and how committed points reach the vault. */
function vaultTargets(repos: VaultRepositories, sites: SiteResources, alerts: AlertRepository): TargetResolver {
  // Sites whose store may have an active `replica-store-full` alert: all at start (one may survive a restart), then
  // those this process raised one for; the next commit there resolves it (space was freed).
  const maybeFull = new Set<string>();
  const resolvedOnce = new Set<string>();
  return {
    async resolve(replicationId) {
      const rep = await repos.replications.byId(replicationId);
      if (!isReplicating(rep.state)) {
        throw new RefugeError('operation_not_allowed', `replication '${rep.name}' is ${rep.state}; it accepts no data`, {
          details: { allowedOperations: [] },
        });
      }
      const [site, policy] = await Promise.all([repos.sites.byId(rep.targetSiteId), repos.policies.byId(rep.policyId)]);
      const store = await sites.store(site);
      return {
        store,
        chunkSize: replicationChunkSize(policy, store.chunkSize),
        onStoreFull: async (err) => {
          maybeFull.add(site.id);
          await alerts.raise(rep.vaultId, storeFullAlert(site.name, rep.name, err));
        },
        onCommitted: async (m) => {
          await repos.replications.recordPoint(pointRecord(m));
          // A commit went through: the store has room again.
          if (maybeFull.has(site.id) || !resolvedOnce.has(site.id)) {
            await alerts.resolve(rep.vaultId, 'replica-store-full', storeFullSubject(site.name));
            maybeFull.delete(site.id);
            resolvedOnce.add(site.id);
          }
        },
      };
    },
  };
}

/** A stable name for the vault process using this data folder (its job leases carry it). */
async function instanceId(dataDir: string): Promise<string> {
  const path = join(dataDir, 'instance-id');
  try {
    return (await readFile(path, 'utf8')).trim();
  } catch {
    const id = `${hostname()}-${randomBytes(6).toString('hex')}`;
    await writeFileAtomic(path, `${id}\n`);
    return id;
  }
}

/**
 * The composition root of `refuge vault`: database, stores, replicator, jobs and the HTTP API, assembled but not
 * listening (tests call `app.inject()`); `startVaultServer` listens.
 */
export async function assembleVault(o: VaultServerOptions): Promise<VaultServer & { setUrl(url: string): void }> {
  const log = o.log ?? createLogger('vault');
  const tls = await loadServerTls(o.dataDir, o.insecureHttp === true);
  const issuingCa = await loadIssuingCa(o.dataDir);
  const db = await openDatabase(o.databaseUrl ?? defaultDatabaseUrl(o.dataDir));
  const repos = createRepositories(db);
  const identities = new AgentIdentityRepository(db);
  const events = new EventRepository(db);
  const alerts = new AlertRepository(db, events);
  const serverCert = tls ? certificateFacts(tls.certPem) : undefined;
  const monitor = new Monitor({ repos, alerts, events, certificate: () => serverCert, log });
  const notifier = new Notifier(db, { log });
  const sites = new SiteResources(o.fabricFor, (site) => repos.replications.hasPointsAt(site.id));
  const deps = { repos, sites };
  // Plans and drills run per-machine operations through OperationService, which needs the engine: late-bound.
  const drillRepo = new DrillRepository(db);
  const late: DrillJobDeps = { ...deps, operations: (): OperationService => operations, engine: (): JobEngine => engine, plans: (): PlanService => plans, drills: drillRepo };
  const definitions: JobDefinition<never>[] = [...createJobDefinitions(deps), ...(planJobDefinitions(late) as JobDefinition<never>[]), drillJobDefinition(late)];
  const engine = new JobEngine(db, holdTasks(definitions, o.holdTasks ?? []), {
    log,
    listeners: [monitor, { jobEnded: (job) => metrics.jobEnded(job) }],
    owner: o.instanceId ?? (await instanceId(o.dataDir)),
    ...(o.jobLeaseSeconds ? { leaseSeconds: o.jobLeaseSeconds } : {}),
  });
  let url = '';
  const readiness = new ReadinessService(db, repos, {
    certificate: () => serverCert,
    encryptionKey: () => {
      const path = vaultKeyPath(o.dataDir);
      const st = existsSync(path) ? statSync(path) : undefined;
      return { path, present: st?.size === 32, ...(st ? { mode: st.mode & 0o777 } : {}) };
    },
    endpoints: () => ({ vault: url, replicator: `${url}/replicator/v1` }),
  }, { alerts, events });
  const operations = new OperationService(deps, engine, readiness);
  const plans = new PlanService(deps, engine, readiness);
  const drills = new DrillService(repos, drillRepo, engine, log.child({ component: 'drills' }));
  const replicator = new Replicator(vaultTargets(repos, sites, alerts), log.child({ component: 'replicator' }));
  const metrics = new VaultMetrics(repos, replicator);
  const groupCuts = new GroupCutCoordinator(db, events, { ...DEFAULT_GROUP_CUT_SETTINGS, ...o.groupCuts }, log.child({ component: 'group-cuts' }));
  const monitoring = { events, alerts, channels: new AlertChannelRepository(db), notifier, monitor };
  const app = await buildApp({
    repos,
    engine,
    operations,
    replicator,
    sites,
    dataDir: o.dataDir,
    users: new UserRepository(db),
    monitoring,
    readiness,
    metrics,
    audit: new AuditRepository(db),
    tls,
    issuingCa,
    caFingerprint256: tls ? certificateFacts(tls.caPem).fingerprint256 : certificateFacts(issuingCa.certPem).fingerprint256,
    identities,
    agentRefusal: async (fingerprint256, machine) => {
      const c = await identities.byFingerprint(fingerprint256);
      if (!c) return 'the certificate was not issued by this vault to any agent';
      if (c.revokedAt) return `the certificate of ${c.kind} '${c.name}' is revoked`;
      const own = c.kind === 'machine' && c.vaultId === machine.vaultId && (c.machineId ? c.machineId === machine.id : c.name === machine.name);
      return own ? undefined : `the certificate of ${c.kind} '${c.name}' is not the agent of this replication's machine`;
    },
    replicatorUrl: () => `${url}/replicator/v1`,
    replicators: new ReplicatorRegistry(),
    groupCuts,
    plans,
    drills,
    log,
  });
  await engine.start();
  groupCuts.start();
  drills.start(o.drillPollMs ?? 5000);
  const retention = new RetentionService(deps, { log, events, alerts });
  if (o.retentionIntervalMs !== 0) retention.start(o.retentionIntervalMs ?? 600_000);
  let readinessTimer: NodeJS.Timeout | undefined;
  if (o.monitorIntervalMs !== 0) {
    monitor.start(o.monitorIntervalMs ?? 30_000);
    notifier.start();
    // The configuration validator: every readiness check of every replication, hourly (ASR: every 12 hours).
    // Events, and the history of group cuts no kept point belongs to, are kept 30 days.
    const hourly = async () => {
      await readiness.runPeriodic();
      const monthAgo = new Date(Date.now() - EVENT_RETENTION_DAYS * 86400_000).toISOString();
      await events.prune(monthAgo);
      await groupCuts.cuts.pruneHistory(monthAgo);
    };
    readinessTimer = setInterval(() => void hourly().catch((err: unknown) => log.error({ err }, 'periodic readiness checks failed')), o.readinessIntervalMs ?? 3600_000);
    readinessTimer.unref();
  }
  return {
    get url() {
      return url;
    },
    setUrl(u: string) {
      url = u;
    },
    app,
    repos,
    engine,
    replicator,
    sites,
    monitoring,
    readiness,
    plans,
    drills,
    retention,
    async close() {
      clearInterval(readinessTimer);
      groupCuts.stop();
      await drills.stop();
      await retention.stop();
      monitor.stop();
      await notifier.stop();
      await engine.stop();
      await sites.close();
      await app.close();
      await db.destroy();
    },
  };
}

export async function startVaultServer(o: VaultServerOptions): Promise<VaultServer> {
  const vault = await assembleVault(o);
  const host = o.host ?? '127.0.0.1';
  const port = o.port ?? 7443;
  try {
    const address = await vault.app.listen({ host, port });
    vault.setUrl(address.replace('[::1]', 'localhost').replace('://127.0.0.1', '://127.0.0.1'));
  } catch (err) {
    await vault.close();
    throw RefugeError.wrap(err, `vault cannot listen on ${host}:${port}`, 'unavailable');
  }
  vault.app.log.info({ url: vault.url, dataDir: o.dataDir }, 'vault listening');
  return vault;
}
