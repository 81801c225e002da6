import type { TLSSocket } from 'node:tls';
import { RefugeError } from './errors.js';

const REGISTER = 'register the agent again: `refuge agent register` with a new key from `refuge agent key create`';

/**
 * The client certificate a TLS connection presented, once verified against the server's trusted CA; undefined when
 * none was presented (plain HTTP, an in-process request, or a TLS client without one). An expired certificate or
 * one from another CA is refused here with the reason, the same way by the vault and by a replicator (servers ask
 * for certificates without rejecting at the handshake, so the client reads a clear 401 instead of a TLS alert).
 */
export function verifiedClientCertificate(socket: Partial<TLSSocket>): { fingerprint256: string; subject: string } | undefined {
  if (typeof socket.getPeerCertificate !== 'function') return undefined;
  const peer = socket.getPeerCertificate();
  if (!peer || !peer.fingerprint256) return undefined;
  if (!socket.authorized) {
    const code = String(socket.authorizationError ?? 'unverified');
    if (code === 'CERT_HAS_EXPIRED') {
      throw new RefugeError('unauthenticated', `the client certificate '${String(peer.subject?.CN ?? '')}' expired at ${new Date(peer.valid_to).toISOString()}`, {
        hint: `agents renew their certificate before it expires; once expired, ${REGISTER}`,
        details: { certificate: 'expired' },
      });
    }
    const issuer = Object.entries(peer.issuer ?? {}).map(([k, v]) => `${k}=${String(v)}`).join(', ');
    throw new RefugeError('unauthenticated', `the client certificate was not issued by this vault's CA (issuer '${issuer}': ${code})`, {
      hint: REGISTER,
      details: { certificate: 'untrusted' },
    });
  }
  return { fingerprint256: peer.fingerprint256, subject: String(peer.subject?.CN ?? '') };
}

export const REGISTER_HINT = REGISTER;
