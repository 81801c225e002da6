import type { TLSSocket } from 'node:tls';
import type { FastifyRequest } from 'fastify';
import { verifiedClientCertificate } from '../core/client-certificate.js';
import { RefugeError } from '../core/errors.js';

/** Asks the vault whether the agent with this certificate may send data for a replication; why not, or undefined. */
export type AgentCheck = (replicationId: string, fingerprint256: string) => Promise<string | undefined>;

/**
 * Mutual TLS for a standalone replicator: every route but health needs a client certificate issued by the vault's
 * CA (verified at the handshake against it); expired or foreign certificates are refused with the reason, and the
 * vault says whether the certificate belongs to the agent of the replication it sends for (revoked ones do not).
 * Verdicts are cached for a few seconds, as the replicator caches whether a replication accepts data.
 */
export function agentCertificateHook(check: AgentCheck): (req: FastifyRequest) => Promise<void> {
  const verdicts = new Map<string, { refused: string | undefined; until: number }>();
  return async (req) => {
    if (req.routeOptions.url === undefined || req.routeOptions.url.endsWith('/health')) return;
    const peer = verifiedClientCertificate(req.raw.socket as Partial<TLSSocket>);
    if (!peer) {
      throw new RefugeError('unauthenticated', 'the replicator needs a client certificate issued by the vault (agents use mutual TLS)', {
        hint: 'register the agent with `refuge agent register`; it then presents its certificate',
      });
    }
    const replication = (req.params as Record<string, string> | undefined)?.replication;
    if (!replication) return;
    const key = `${replication}|${peer.fingerprint256}`;
    let v = verdicts.get(key);
    if (!v || v.until < Date.now()) {
      v = { refused: await check(replication, peer.fingerprint256), until: Date.now() + 5000 };
      verdicts.set(key, v);
      if (verdicts.size > 10_000) verdicts.clear();
    }
    if (v.refused) throw new RefugeError('permission_denied', `this agent may not send data for replication ${replication}: ${v.refused}`);
  };
}
