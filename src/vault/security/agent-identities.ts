import { createHash, randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import { RefugeError } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import type { Database } from '../db/schema.js';

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** How long a registration key stays redeemable unless its creator says otherwise. */
export const DEFAULT_KEY_MINUTES = 60;
/** How long an agent's or replicator's client certificate lives; agents renew it after two thirds of that. */
export const CERTIFICATE_DAYS = 30;

export interface IssuedCertificate {
  id: string;
  vaultId: string;
  kind: 'machine' | 'replicator';
  /** The machine name, or the site a replicator serves. */
  name: string;
  siteId: string;
  machineId: string | null;
  fingerprint256: string;
  notAfter: string;
  revokedAt: string | null;
}

/**
 * Registration keys and the client certificates issued for them. A key (`rrk_` + 256 random bits, shown once, stored
 * as SHA-256) is redeemed once, before it expires; each redemption or renewal records the issued certificate by its
 * fingerprint, which is how the vault maps a TLS client to its machine or replicator, and how it revokes one.
 */
export class AgentIdentityRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async createKey(vaultId: string, createdBy: string, minutes = DEFAULT_KEY_MINUTES): Promise<{ id: string; key: string; expiresAt: string }> {
    const key = `rrk_${randomBytes(32).toString('base64url')}`;
    const row = {
      id: newId('rkey'),
      vaultId,
      secretHash: sha256(key),
      createdBy,
      createdAt: new Date().toISOString(),
      expiresAt: new Date(Date.now() + minutes * 60_000).toISOString(),
      usedAt: null,
      usedBy: null,
    };
    await this.db.insertInto('registrationKeys').values(row).execute();
    return { id: row.id, key, expiresAt: row.expiresAt };
  }

  /**
   * Marks a key used by `usedBy`, or throws why it cannot be: unknown (or of another vault), already used, expired.
   * The update is conditional on the key being unused, so two agents racing for one key cannot both win.
   */
  async redeemKey(vaultId: string, key: string, usedBy: string): Promise<void> {
    const hint = 'ask an owner or contributor for a new key: `refuge agent key create --write FILE`';
    const row = /^rrk_[A-Za-z0-9_-]{43}$/.test(key)
      ? await this.db.selectFrom('registrationKeys').selectAll().where('secretHash', '=', sha256(key)).executeTakeFirst()
      : undefined;
    if (!row || row.vaultId !== vaultId) throw new RefugeError('unauthenticated', 'the registration key is not valid: it is not a key of this vault', { hint });
    if (row.usedAt) throw new RefugeError('unauthenticated', `the registration key was already used (at ${row.usedAt}, by ${row.usedBy}); a key registers one agent only`, { hint });
    const now = new Date().toISOString();
    if (row.expiresAt <= now) throw new RefugeError('unauthenticated', `the registration key expired at ${row.expiresAt}`, { hint });
    const r = await this.db.updateTable('registrationKeys').set({ usedAt: now, usedBy }).where('id', '=', row.id).where('usedAt', 'is', null).executeTakeFirst();
    if (Number(r.numUpdatedRows) !== 1) throw new RefugeError('unauthenticated', 'the registration key was already used; a key registers one agent only', { hint });
  }

  async record(c: Omit<IssuedCertificate, 'id' | 'revokedAt'>): Promise<IssuedCertificate> {
    const row = { ...c, id: newId('cert'), revokedAt: null, createdAt: new Date().toISOString() };
    await this.db.insertInto('agentCertificates').values(row).execute();
    return { ...c, id: row.id, revokedAt: null };
  }

  async byFingerprint(fingerprint256: string): Promise<IssuedCertificate | undefined> {
    const r = await this.db.selectFrom('agentCertificates').selectAll().where('fingerprint256', '=', fingerprint256).executeTakeFirst();
    return r ? { id: r.id, vaultId: r.vaultId, kind: r.kind as IssuedCertificate['kind'], name: r.name, siteId: r.siteId, machineId: r.machineId, fingerprint256: r.fingerprint256, notAfter: r.notAfter, revokedAt: r.revokedAt } : undefined;
  }

  /** Binds a machine certificate to the machine record its agent registered (first registration only). */
  async bindMachine(certificateId: string, machineId: string): Promise<void> {
    await this.db.updateTable('agentCertificates').set({ machineId }).where('id', '=', certificateId).where('machineId', 'is', null).execute();
  }

  async revoke(certificateId: string): Promise<void> {
    await this.db.updateTable('agentCertificates').set({ revokedAt: new Date().toISOString() }).where('id', '=', certificateId).where('revokedAt', 'is', null).execute();
  }

  /** Whether the machine a certificate was bound to still exists (a removed machine's certificates are revoked). */
  async machineExists(machineId: string): Promise<boolean> {
    return (await this.db.selectFrom('machines').select('id').where('id', '=', machineId).executeTakeFirst()) !== undefined;
  }
}
