import type { Kysely } from 'kysely';
import { newId } from '../../core/ids.js';
import type { Database } from '../db/schema.js';

export interface AuditEntry {
  id: string;
  at: string;
  principal: string;
  role: string | null;
  /** `METHOD /route/pattern`, e.g. `POST /api/v1/vaults/:vault/replications/:replication/failover`. */
  action: string;
  vault: string | null;
  /** The resource acted on, from the path (e.g. `replication=web`). */
  target: string | null;
  status: number;
  details: Record<string, unknown>;
}

const SECRET_KEY = /pass|secret|token|key|authorization|cookie/i;

/** Copies `value` with every field whose name suggests a secret replaced, at any depth. */
export function redactSecrets(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redactSecrets);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, SECRET_KEY.test(k) ? '[redacted]' : redactSecrets(v)]));
  }
  return value;
}

/** The audit log: every change and every failover, who asked, and how it ended. Append-only. */
export class AuditRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async record(e: Omit<AuditEntry, 'id' | 'at'>): Promise<void> {
    await this.db
      .insertInto('auditLog')
      .values({
        id: newId('aud'),
        at: new Date().toISOString(),
        principal: e.principal,
        role: e.role,
        action: e.action,
        vault: e.vault,
        target: e.target,
        status: e.status,
        detailsJson: JSON.stringify(redactSecrets(e.details)),
      })
      .execute();
  }

  /** Newest first; `before` is the last id of the previous page. */
  async list(f: { vault?: string; principal?: string; limit?: number; before?: string } = {}): Promise<AuditEntry[]> {
    let q = this.db.selectFrom('auditLog').selectAll();
    if (f.vault) q = q.where('vault', '=', f.vault);
    if (f.principal) q = q.where('principal', '=', f.principal);
    if (f.before) q = q.where('id', '<', f.before);
    const rows = await q.orderBy('id', 'desc').limit(f.limit ?? 100).execute();
    return rows.map(({ detailsJson, ...r }) => ({ ...r, status: Number(r.status), details: JSON.parse(detailsJson) as Record<string, unknown> }));
  }
}
