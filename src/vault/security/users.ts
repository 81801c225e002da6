import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { hash, verify } from '@node-rs/argon2';
import type { Kysely } from 'kysely';
import { RefugeError, notFound } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import type { Database } from '../db/schema.js';
import { roleAtMost, type Principal, type Role } from './roles.js';

/** Session tokens from a login last this long. */
export const SESSION_HOURS = 12;

export interface User {
  id: string;
  name: string;
  role: Role;
  disabled: boolean;
  createdAt: string;
}

export interface TokenInfo {
  id: string;
  name: string;
  kind: 'session' | 'api' | 'agent';
  role: Role | 'agent';
  user: string | null;
  vaultId: string | null;
  createdAt: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
/** A hash of a password nobody has, so a login for an unknown user costs as much as one for a known user. */
let decoy: Promise<string> | undefined;

/**
 * Users (passwords hashed with argon2id) and bearer tokens. A token is `rfg_` + 43 url-safe characters (256 random
 * bits), shown once at creation; only its SHA-256 is stored, which is enough for secrets of that entropy.
 */
export class UserRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async create(name: string, password: string, role: Role): Promise<User> {
    if (password.length < 12) throw new RefugeError('invalid_argument', 'a password needs at least 12 characters', { details: { field: '/body/password' } });
    const user = { id: newId('user'), name, role, disabled: 0, createdAt: new Date().toISOString(), passwordHash: await hash(password) };
    try {
      await this.db.insertInto('users').values(user).execute();
    } catch (err) {
      if (/UNIQUE constraint failed|duplicate key value/.test(String((err as Error).message))) throw new RefugeError('already_exists', `user '${name}' already exists`);
      throw err;
    }
    return { id: user.id, name, role, disabled: false, createdAt: user.createdAt };
  }

  async list(): Promise<User[]> {
    const rows = await this.db.selectFrom('users').select(['id', 'name', 'role', 'disabled', 'createdAt']).orderBy('name').execute();
    return rows.map((r) => ({ ...r, role: r.role as Role, disabled: Number(r.disabled) === 1 }));
  }

  async get(name: string): Promise<User> {
    const r = await this.db.selectFrom('users').select(['id', 'name', 'role', 'disabled', 'createdAt']).where('name', '=', name).executeTakeFirst();
    if (!r) throw notFound('user', name);
    return { ...r, role: r.role as Role, disabled: Number(r.disabled) === 1 };
  }

  async update(name: string, change: { role?: Role; password?: string; disabled?: boolean }): Promise<User> {
    const user = await this.get(name);
    if (change.password !== undefined && change.password.length < 12) throw new RefugeError('invalid_argument', 'a password needs at least 12 characters', { details: { field: '/body/password' } });
    await this.db
      .updateTable('users')
      .set({
        ...(change.role ? { role: change.role } : {}),
        ...(change.password !== undefined ? { passwordHash: await hash(change.password) } : {}),
        ...(change.disabled !== undefined ? { disabled: change.disabled ? 1 : 0 } : {}),
      })
      .where('id', '=', user.id)
      .execute();
    // A demoted, disabled or re-keyed user's sessions end; API tokens stronger than the new role end too.
    if (change.disabled || change.password !== undefined) await this.db.deleteFrom('tokens').where('userId', '=', user.id).where('kind', '=', 'session').execute();
    if (change.disabled) await this.db.deleteFrom('tokens').where('userId', '=', user.id).execute();
    return this.get(name);
  }

  async count(): Promise<number> {
    const r = await this.db.selectFrom('users').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow();
    return Number(r.n);
  }

  /** The user if the password is right and the user enabled; undefined otherwise (never says which). */
  async verifyPassword(name: string, password: string): Promise<User | undefined> {
    const r = await this.db.selectFrom('users').selectAll().where('name', '=', name).executeTakeFirst();
    if (!r) {
      await verify((await (decoy ??= hash(randomBytes(16).toString('hex')))), password).catch(() => false);
      return undefined;
    }
    const ok = await verify(r.passwordHash, password).catch(() => false);
    if (!ok || Number(r.disabled) === 1) return undefined;
    return { id: r.id, name: r.name, role: r.role as Role, disabled: false, createdAt: r.createdAt };
  }

  /** Issues a token; `role` defaults to the user's and may not exceed it. Returns the secret, shown only now. */
  async issueToken(input: { user: User | null; name: string; kind: TokenInfo['kind']; role?: Role | 'agent'; vaultId?: string | null; expiresAt?: string | null }): Promise<{ token: string; info: TokenInfo }> {
    const role = input.kind === 'agent' ? 'agent' : (input.role ?? input.user?.role);
    if (!role) throw new RefugeError('invalid_argument', 'a token needs a role');
    if (input.user && role !== 'agent' && !roleAtMost(role, input.user.role)) {
      throw new RefugeError('permission_denied', `a token of user '${input.user.name}' cannot have role ${role}, stronger than the user's ${input.user.role}`);
    }
    if (input.kind === 'agent' && !input.vaultId) throw new RefugeError('invalid_argument', 'an agent token belongs to one vault');
    const secret = `rfg_${randomBytes(32).toString('base64url')}`;
    const row = {
      id: newId('tok'),
      userId: input.user?.id ?? null,
      name: input.name,
      secretHash: sha256(secret),
      kind: input.kind,
      role: input.kind === 'agent' ? 'agent' : role,
      vaultId: input.vaultId ?? null,
      createdAt: new Date().toISOString(),
      expiresAt: input.expiresAt ?? (input.kind === 'session' ? new Date(Date.now() + SESSION_HOURS * 3600_000).toISOString() : null),
      lastUsedAt: null,
    };
    await this.db.insertInto('tokens').values(row).execute();
    return { token: secret, info: this.tokenInfo(row, input.user?.name ?? null) };
  }

  /** The principal a bearer token stands for, or undefined if it is unknown, expired or its user disabled. */
  async authenticate(secret: string): Promise<Principal | undefined> {
    if (!/^rfg_[A-Za-z0-9_-]{43}$/.test(secret)) return undefined;
    const wanted = sha256(secret);
    const r = await this.db
      .selectFrom('tokens')
      .leftJoin('users', 'users.id', 'tokens.userId')
      .select(['tokens.id', 'tokens.name', 'tokens.secretHash', 'tokens.kind', 'tokens.role', 'tokens.vaultId', 'tokens.expiresAt', 'tokens.lastUsedAt', 'users.name as userName', 'users.disabled', 'users.role as userRole'])
      .where('tokens.secretHash', '=', wanted)
      .executeTakeFirst();
    if (!r || !timingSafeEqual(Buffer.from(r.secretHash), Buffer.from(wanted))) return undefined;
    const now = new Date();
    if (r.expiresAt && Date.parse(r.expiresAt) <= now.getTime()) return undefined;
    if (r.userName !== null && Number(r.disabled) === 1) return undefined;
    // Touch last use at most once a minute: authentication is on every request's path.
    if (!r.lastUsedAt || now.getTime() - Date.parse(r.lastUsedAt) > 60_000) {
      await this.db.updateTable('tokens').set({ lastUsedAt: now.toISOString() }).where('id', '=', r.id).execute();
    }
    if (r.kind === 'agent') return { kind: 'agent', name: `agent:${r.name}`, role: 'agent', vaultId: r.vaultId, tokenId: r.id };
    // A user's token never outranks the user's current role.
    const role = r.userRole && !roleAtMost(r.role as Role, r.userRole as Role) ? (r.userRole as Role) : (r.role as Role);
    return { kind: 'user', name: `user:${r.userName ?? r.name}`, role, vaultId: null, tokenId: r.id };
  }

  async listTokens(): Promise<TokenInfo[]> {
    const rows = await this.db.selectFrom('tokens').leftJoin('users', 'users.id', 'tokens.userId').selectAll('tokens').select('users.name as userName').where('tokens.kind', '!=', 'session').orderBy('tokens.id').execute();
    return rows.map((r) => this.tokenInfo(r, r.userName));
  }

  async revokeToken(id: string): Promise<void> {
    const r = await this.db.deleteFrom('tokens').where('id', '=', id).executeTakeFirst();
    if (Number(r.numDeletedRows) !== 1) throw notFound('token', id);
  }

  private tokenInfo(r: { id: string; name: string; kind: string; role: string; vaultId: string | null; createdAt: string; expiresAt: string | null; lastUsedAt: string | null }, user: string | null): TokenInfo {
    return { id: r.id, name: r.name, kind: r.kind as TokenInfo['kind'], role: r.role as TokenInfo['role'], user, vaultId: r.vaultId, createdAt: r.createdAt, expiresAt: r.expiresAt, lastUsedAt: r.lastUsedAt };
  }
}
