import type { AlertKind } from './channels/channel.js';
import type { Severity } from './events.js';

/**
 * The `replica-store-full` alert of a site, one per site whichever replicator hit the full store (the vault's own or
 * a standalone one): raised when a write is refused for lack of space, resolved by the next commit that goes through.
 */
export const storeFullSubject = (site: string): string => `site ${site}`;

export function storeFullAlert(
  site: string,
  replication: string,
  refusal: { message: string; hint?: string },
): { kind: AlertKind; subject: string; severity: Severity; message: string; details: Record<string, unknown> } {
  return {
    kind: 'replica-store-full',
    subject: storeFullSubject(site),
    severity: 'critical',
    message: `the replica store of site '${site}' is out of space; replication of '${replication}' is stalled: ${refusal.message}`,
    details: { site, replication, ...(refusal.hint ? { hint: refusal.hint } : {}) },
  };
}
