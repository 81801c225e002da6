import { Type, type Static } from 'typebox';
import { Name } from './schemas.js';

/**
 * Registration of an agent or a standalone replicator (docs/protocol.md, "Registration"): the caller redeems a
 * one-time registration key for a client certificate. It sends a PKCS#10 request for a key it generated (the key
 * never leaves its host); the vault CA signs it for the identity named here. Afterwards every call uses mutual TLS.
 */
export const EnrollRequest = Type.Object(
  {
    /** The one-time registration key (`rrk_...`) from `refuge agent key create`. */
    key: Type.String({ maxLength: 200 }),
    kind: Type.Union([Type.Literal('machine'), Type.Literal('replicator')]),
    /** The site the machine runs at, or the site a replicator serves. */
    site: Name,
    /** The machine's name (kind machine). */
    machine: Type.Optional(Name),
    /** PEM PKCS#10 certificate signing request. */
    csr: Type.String({ maxLength: 16_384 }),
    /** Replicators: the host names and addresses agents reach it at (its certificate also serves HTTPS). */
    names: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 253 }), { maxItems: 16 })),
  },
  { additionalProperties: false },
);
export type EnrollRequest = Static<typeof EnrollRequest>;

export const EnrollResponse = Type.Object({
  vault: Name,
  /** PEM of the issued certificate. */
  certificate: Type.String(),
  /** PEM of the CA that issued it: what agents trust for replicators, and replicators for agents. */
  issuingCa: Type.String(),
  notAfter: Type.String({ format: 'date-time' }),
});
export type EnrollResponse = Static<typeof EnrollResponse>;

/** A certificate renewal: a new key's request, authenticated by the current (still valid) certificate. */
export const RenewRequest = Type.Object({ csr: Type.String({ maxLength: 16_384 }) }, { additionalProperties: false });
export type RenewRequest = Static<typeof RenewRequest>;

export const RegistrationKeyRequest = Type.Object(
  { expiresInMinutes: Type.Optional(Type.Integer({ minimum: 1, maximum: 7 * 24 * 60 })) },
  { additionalProperties: false },
);

export const RegistrationKeyResponse = Type.Object({
  id: Type.String(),
  key: Type.String(),
  vault: Name,
  expiresAt: Type.String({ format: 'date-time' }),
  /** SHA-256 fingerprint of the CA the vault's HTTPS certificate chains to: what a registering agent checks. */
  caFingerprint256: Type.String(),
});
export type RegistrationKeyResponse = Static<typeof RegistrationKeyResponse>;

/**
 * The registration credentials file (`refuge agent key create --write FILE`): all an agent or a replicator needs to
 * register. The CA fingerprint lets it decide whether to trust the chain the vault presents.
 */
export interface RegistrationCredentials {
  url: string;
  vault: string;
  caFingerprint256: string;
  registrationKey: string;
  expiresAt?: string;
}
