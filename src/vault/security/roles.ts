/**
 * Who may do what, as Azure Site Recovery's built-in roles: an owner does everything including managing access;
 * a contributor everything but access; an operator reads and runs operations (failover, test failover, commit,
 * job cancel/resume/restart) but changes no configuration; a reader only reads. An agent token may only call the
 * agent and replicator routes of its own vault.
 */
export const ROLES = ['owner', 'contributor', 'operator', 'reader'] as const;
export type Role = (typeof ROLES)[number];

export const PERMISSIONS = ['read', 'operate', 'configure', 'administer', 'agent'] as const;
export type Permission = (typeof PERMISSIONS)[number];

const GRANTS: Record<Role | 'agent', readonly Permission[]> = {
  owner: PERMISSIONS,
  contributor: ['read', 'operate', 'configure', 'agent'],
  operator: ['read', 'operate'],
  reader: ['read'],
  agent: ['agent'],
};

export function allows(role: Role | 'agent', permission: Permission): boolean {
  return GRANTS[role].includes(permission);
}

/** Whether `role` is at most as strong as `than` (a token never carries more than its user). */
export function roleAtMost(role: Role, than: Role): boolean {
  return ROLES.indexOf(role) >= ROLES.indexOf(than);
}

/** Who is calling, as resolved from a bearer token. */
export interface Principal {
  kind: 'user' | 'agent';
  /** `user:<name>` or `agent:<token name>`: how the audit log names the caller. */
  name: string;
  role: Role | 'agent';
  /** For agent tokens: the one vault they may act in. */
  vaultId: string | null;
  /** The token's id, or the issued certificate's for an agent or replicator authenticated by mutual TLS. */
  tokenId: string;
  /** For a client certificate: the machine (its agent) or the site (a standalone replicator) it was issued to. */
  identity?: { kind: 'machine' | 'replicator'; name: string; siteId: string; machineId: string | null; certificateId: string };
}
