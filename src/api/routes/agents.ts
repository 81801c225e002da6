import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { RefugeError } from '../../core/errors.js';
import { EnrollRequest, EnrollResponse, RegistrationKeyRequest, RegistrationKeyResponse, RenewRequest } from '../../protocol/enrollment.js';
import { HeartbeatRequest, HeartbeatResponse, RegisterRequest, RegisterResponse } from '../../protocol/schemas.js';
import type { BlobNaming } from '../../store/chunks.js';
import { replicationChunkSize } from '../../vault/model.js';
import { minor } from '../../vault/readiness/checks-agent.js';
import { isReplicating } from '../../vault/replication-state.js';
import { CERTIFICATE_DAYS } from '../../vault/security/agent-identities.js';
import { signCsr } from '../../vault/security/pki.js';
import type { AppDeps } from '../deps.js';
import { VaultParams, named } from './params.js';

/**
 * How soon the agent where a re-protected machine runs heartbeats again while the seed is made: the moment it may
 * ship is on the re-protect's critical path, and these few small requests last only as long as the seed.
 */
const REPROTECT_HEARTBEAT_SECONDS = 0.25;

/**
 * The agent's side of the vault API (docs/protocol.md): registration keys, registration (a key redeemed for a
 * client certificate), certificate renewal, machine registration and heartbeats. The heartbeat answer tells the
 * agent whether to replicate, with the policy's interval and where the replicator is.
 */
export function agentRoutes(deps: AppDeps): FastifyPluginAsync {
  const { repos } = deps;
  /** Signs a request for `identity` and records the certificate, so the vault knows it at each TLS handshake. */
  const issue = async (csr: string, identity: { vaultId: string; kind: 'machine' | 'replicator'; name: string; siteId: string; machineId: string | null; names?: string[] }) => {
    const certificate = signCsr(deps.issuingCa, csr, {
      commonName: identity.kind === 'machine' ? `machine:${identity.name}` : `replicator:${identity.name}`,
      usage: identity.kind === 'machine' ? 'client' : 'both',
      days: CERTIFICATE_DAYS,
      ...(identity.names ? { names: identity.names } : {}),
    });
    const x = new X509Certificate(certificate);
    const notAfter = new Date(x.validTo).toISOString();
    const { names: _n, ...rest } = identity;
    await deps.identities.record({ ...rest, fingerprint256: x.fingerprint256, notAfter });
    return { certificate, issuingCa: deps.issuingCa.certPem, notAfter };
  };
  /** The machine a request's client certificate stands for, when the caller is an agent (users act for any). */
  const assertOwnMachine = (req: FastifyRequest, machine: string) => {
    const id = req.principal?.identity;
    if (id && (id.kind !== 'machine' || id.name !== machine)) {
      throw new RefugeError('permission_denied', `the certificate of ${id.kind} '${id.name}' may not register machine '${machine}'`, { hint: 'each agent registers the machine its key was redeemed for' });
    }
  };

  return async (fastify) => {
    const app = fastify.withTypeProvider<TypeBoxTypeProvider>();

    app.post('/vaults/:vault/agents/keys', {
      config: { permission: 'configure' },
      schema: { params: VaultParams, body: RegistrationKeyRequest, response: { 201: RegistrationKeyResponse } },
    }, async (req, reply) => {
      const v = await repos.vaults.get(req.params.vault);
      const k = await deps.identities.createKey(v.id, req.principal?.name ?? 'unknown', req.body.expiresInMinutes);
      return reply.code(201).send({ ...k, vault: v.name, caFingerprint256: deps.caFingerprint256 });
    });

    // Public: the one-time key in the body is the credential (checked before anything else is looked at).
    app.post('/vaults/:vault/agents/enroll', {
      config: { permission: 'public' },
      schema: { params: VaultParams, body: EnrollRequest, response: { 201: EnrollResponse } },
    }, async (req, reply) => {
      const b = req.body;
      const v = await repos.vaults.get(req.params.vault).catch(() => {
        throw new RefugeError('unauthenticated', 'the registration key is not valid: it is not a key of this vault');
      });
      if (b.kind === 'machine' && !b.machine) throw new RefugeError('invalid_argument', 'a machine registration names the machine', { details: { field: '/body/machine' } });
      const name = b.kind === 'machine' ? (b.machine as string) : b.site;
      await deps.identities.redeemKey(v.id, b.key, `${b.kind}:${name}`);
      const site = await repos.sites.get(v.id, b.site);
      const issued = await issue(b.csr, { vaultId: v.id, kind: b.kind, name, siteId: site.id, machineId: null, ...(b.kind === 'replicator' && b.names ? { names: b.names } : {}) });
      req.log.info({ vault: v.name, kind: b.kind, name, notAfter: issued.notAfter }, 'agent registered: client certificate issued');
      return reply.code(201).send({ vault: v.name, ...issued });
    });

    // Renewal, authenticated by the current certificate: the same identity with a new key; the old one is revoked.
    app.post('/vaults/:vault/agents/renew', {
      config: { permission: 'agent' },
      schema: { params: VaultParams, body: RenewRequest, response: { 201: EnrollResponse } },
    }, async (req, reply) => {
      const id = req.principal?.identity;
      if (!id) throw new RefugeError('unauthenticated', 'renewal needs the current client certificate', { hint: 'the agent renews with the certificate it has, before it expires' });
      const v = await repos.vaults.get(req.params.vault);
      const names = id.kind === 'replicator' ? subjectAltNames(req) : undefined;
      const issued = await issue(req.body.csr, { vaultId: v.id, kind: id.kind, name: id.name, siteId: id.siteId, machineId: id.machineId, ...(names ? { names } : {}) });
      await deps.identities.revoke(id.certificateId);
      return reply.code(201).send({ vault: v.name, ...issued });
    });

    app.post('/vaults/:vault/agents/register', {
      config: { permission: 'agent' },
      schema: { params: VaultParams, body: RegisterRequest, response: { 200: RegisterResponse } },
    }, async (req) => {
      assertOwnMachine(req, req.body.machine.name);
      const v = await repos.vaults.get(req.params.vault);
      const site = await repos.sites.get(v.id, req.body.site);
      const id = req.principal?.identity;
      if (id && id.siteId !== site.id) {
        throw new RefugeError('permission_denied', `machine '${id.name}' was registered at another site than '${site.name}'`, { hint: 'run the agent with the --site it was registered for, or register it again' });
      }
      const m = await repos.machines.register(v.id, site.id, req.body.agentVersion, req.body.machine);
      if (id) await deps.identities.bindMachine(id.certificateId, m.id);
      return { machineId: m.id, machine: m.name, vault: v.name };
    });

    app.post('/vaults/:vault/agents/:machine/heartbeat', {
      // Heartbeats are not changes anyone asked for: not audited (every 10 s per agent).
      config: { permission: 'agent', audit: false },
      schema: { params: named('machine'), body: HeartbeatRequest, response: { 200: HeartbeatResponse } },
    }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const m = await repos.machines.get(v.id, req.params.machine);
      // The agent's clock against ours (a heartbeat takes milliseconds), kept with its latest reachability report.
      const now = new Date();
      const skew = req.body.sentAt ? (now.getTime() - Date.parse(req.body.sentAt)) / 1000 : undefined;
      const base = req.body.report ? { ...req.body.report, receivedAt: now.toISOString() } : m.agentReport;
      const report = base && (req.body.report || skew !== undefined) ? { ...base, ...(skew !== undefined ? { clockSkewSeconds: skew } : {}) } : undefined;
      await repos.machines.heartbeat(m.id, req.body.agentVersion, req.body.lastError ?? null, report, req.body.host);
      const rep = await repos.replications.findByMachine(m.id);
      if (!rep) return { serverTime: new Date().toISOString(), replication: null };
      if (req.body.progress) await repos.replications.setProgress(rep.id, req.body.progress);
      const [policy, latest, target, group] = await Promise.all([
        repos.policies.byId(rep.policyId),
        repos.replications.latestPoint(rep.id),
        repos.sites.byId(rep.targetSiteId),
        rep.groupId ? repos.db.selectFrom('consistencyGroups').select('name').where('id', '=', rep.groupId).executeTakeFirst() : undefined,
      ]);
      const store = await deps.sites.store(target);
      // Only the agent at the replication's source replicates: after a re-protect the machine's former site may
      // come back with its old agent still running, which must not ship its stale disks as the source.
      const agentSite = req.body.site ? (await repos.sites.get(v.id, req.body.site)).id : m.siteId;
      const ops = rep.failover;
      // An agent that cannot name chunks as the store does (before 0.3.0, a format-3 store) would fail every upload.
      const canShip = agentNamesFor(store.naming, req.body.agentVersion);
      await outdatedAgentAlert(deps, v.id, m.name, rep.name, canShip ? undefined : { version: req.body.agentVersion, site: target.name });
      const mode = canShip && isReplicating(rep.state) && agentSite === rep.sourceSiteId && (rep.state !== 'reprotecting' || ops.reprotectShipping) ? ('replicate' as const) : ('stop' as const);
      // The agent where the machine now runs waits, told `stop`, while a re-protect seeds and reverses: it should
      // learn it may ship within a second, not at its next regular heartbeat (10 s by default).
      // Until the direction is reversed that site is still the replication's target.
      const awaitingReprotect = rep.state === 'reprotecting' && !ops.reprotectShipping && agentSite === rep.targetSiteId;
      // Meanwhile it may hash its disks in the chunks of the store it will ship to (the former source's; its
      // replication's target only once reversed), so that only what differs from the seed is read again then.
      const shipTo = awaitingReprotect ? await deps.sites.store(await repos.sites.byId(rep.sourceSiteId)) : undefined;
      return {
        serverTime: new Date().toISOString(),
        replication: {
          replicationId: rep.id,
          // A re-protect lets the new source ship only once the seed is in place and the direction reversed.
          mode,
          ...(shipTo ? { heartbeatSoonSeconds: REPROTECT_HEARTBEAT_SECONDS, reprotectPending: { chunkSize: replicationChunkSize(policy, shipTo.chunkSize), naming: shipTo.naming } } : {}),
          ...(ops.resyncAfter ? { resyncAfter: ops.resyncAfter } : {}),
          ...(ops.cutAfter ? { cutAfter: ops.cutAfter } : {}),
          crashIntervalSeconds: policy.crashIntervalSeconds,
          chunkSize: replicationChunkSize(policy, store.chunkSize),
          naming: store.naming,
          replicatorUrl: deps.replicators.urlFor(target.id) ?? deps.replicatorUrl(),
          // Before the first point of a re-protected replication, its parent is the seed from the former source's disks.
          latestPointId: latest?.id ?? ops.seedPointId ?? null,
          appIntervalSeconds: policy.appIntervalSeconds,
          group: group?.name ?? null,
        },
      };
    });
  };
}

/**
 * Whether an agent of `version` names chunks as a store of `naming` does: every agent knows sha256; `leaf16` (store
 * format 3) came with agent 0.3.0, which reads the assignment's `naming`. An older agent is told `stop`, not sent to
 * fail every upload (the readiness check's support matrix names its version).
 */
export function agentNamesFor(naming: BlobNaming, version: string): boolean {
  if (naming === 'sha256') return true;
  const [major, min] = minor(version);
  return major > 0 || min >= 3;
}

/**
 * An agent told `stop` because it cannot name chunks as its target store does would otherwise leave its replication
 * to age without a word: a critical `agent-outdated` alert names the machine, its version and the fix, and the
 * first heartbeat from an upgraded agent resolves it. Raising an active alert again only refreshes it.
 */
async function outdatedAgentAlert(deps: AppDeps, vaultId: string, machine: string, replication: string, outdated: { version: string; site: string } | undefined): Promise<void> {
  const { alerts } = deps.monitoring;
  if (!outdated) {
    await alerts.resolve(vaultId, 'agent-outdated', replication);
    return;
  }
  const message = `the agent of '${machine}' is version ${outdated.version}; the replica store at site '${outdated.site}' names chunks by leaf digests, which agents from 0.3.0 do, so '${replication}' ships nothing until the agent is upgraded`;
  await alerts.raise(vaultId, { kind: 'agent-outdated', subject: replication, severity: 'critical', message, details: { machine, agentVersion: outdated.version, site: outdated.site } });
}

/** The DNS names and addresses in the client certificate (a replicator keeps them when it renews). */
function subjectAltNames(req: FastifyRequest): string[] | undefined {
  const san = (req.raw.socket as TLSSocket).getPeerCertificate().subjectaltname;
  if (!san) return undefined;
  return san.split(', ').map((s) => s.replace(/^(DNS|IP Address):/, ''));
}
