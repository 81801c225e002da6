import { lookup } from 'node:dns/promises';
import net from 'node:net';
import tls from 'node:tls';
import { peerIssuer } from '../core/http-client.js';
import type { AgentReport, EndpointReachability } from '../protocol/schemas.js';

const UNTRUSTED = new Set(['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_GET_ISSUER_CERT']);

/**
 * Probes how an endpoint looks from this machine: does its name resolve, does a TCP connection open, and (for
 * https) does its certificate verify against the agent's trust (the vault CA when given). Never throws: the
 * answer is the report the vault's networking and certificate readiness checks read.
 */
export async function probeEndpoint(role: EndpointReachability['role'], url: string, o: { ca?: string; timeoutMs?: number } = {}): Promise<EndpointReachability> {
  const u = new URL(url);
  const port = Number(u.port || (u.protocol === 'https:' ? 443 : 80));
  const base = { role, url, host: u.hostname, port };
  const started = Date.now();
  const timeoutMs = o.timeoutMs ?? 5000;
  try {
    await lookup(u.hostname);
  } catch (err) {
    return { ...base, dns: false, tcp: false, tls: 'n/a', error: (err as Error).message };
  }
  const tcp = await new Promise<string | null>((resolve) => {
    const s = net.connect({ host: u.hostname, port });
    s.setTimeout(timeoutMs, () => {
      s.destroy();
      resolve(`no answer within ${timeoutMs} ms`);
    });
    s.once('connect', () => {
      s.destroy();
      resolve(null);
    });
    s.once('error', (err) => resolve(err.message));
  });
  if (tcp !== null) return { ...base, dns: true, tcp: false, tls: 'n/a', error: tcp };
  if (u.protocol !== 'https:') return { ...base, dns: true, tcp: true, tls: 'n/a', milliseconds: Date.now() - started };
  const verdict = await new Promise<{ tls: EndpointReachability['tls']; notAfter?: string; error?: string }>((resolve) => {
    const s = tls.connect({ host: u.hostname, port, ...(o.ca ? { ca: o.ca } : {}), ...(net.isIP(u.hostname) ? {} : { servername: u.hostname }) });
    s.setTimeout(timeoutMs, () => {
      s.destroy();
      resolve({ tls: 'n/a', error: `no TLS handshake within ${timeoutMs} ms` });
    });
    s.once('secureConnect', () => {
      const notAfter = s.getPeerCertificate().valid_to;
      s.destroy();
      resolve({ tls: 'trusted', notAfter: new Date(notAfter).toISOString() });
    });
    s.once('error', (err: Error & { code?: string }) => {
      const code = err.code ?? '';
      resolve({ tls: UNTRUSTED.has(code) ? 'untrusted' : code === 'CERT_HAS_EXPIRED' ? 'expired' : code === 'ERR_TLS_CERT_ALTNAME_INVALID' ? 'bad-name' : 'n/a', error: `${code} ${err.message}`.trim() });
    });
  });
  const issuer = verdict.tls === 'untrusted' ? (await peerIssuer(u, timeoutMs))?.issuer : undefined;
  return {
    ...base,
    dns: true,
    tcp: true,
    tls: verdict.tls,
    ...(issuer ? { issuer } : {}),
    ...(verdict.notAfter ? { certificateNotAfter: verdict.notAfter } : {}),
    ...(verdict.error ? { error: verdict.error.slice(0, 1000) } : {}),
    milliseconds: Date.now() - started,
  };
}

/** The agent's report on the vault and the replicator it was told to use. */
export async function reachabilityReport(endpoints: { vault: string; replicator?: string }, o: { ca?: string } = {}): Promise<AgentReport> {
  const probes = [probeEndpoint('vault', endpoints.vault, o), ...(endpoints.replicator ? [probeEndpoint('replicator', endpoints.replicator, o)] : [])];
  return { checkedAt: new Date().toISOString(), endpoints: await Promise.all(probes) };
}
