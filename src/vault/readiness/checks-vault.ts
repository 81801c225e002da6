import { allows } from '../security/roles.js';
import { result, type CheckInput, type CheckResult } from './types.js';

/** 1. Account: the caller's role allows the operation; the vault exists; its encryption key is present. */
export function accountCheck(i: CheckInput): CheckResult {
  const key = i.env.encryptionKey();
  const role = i.principal?.role ?? null;
  const measured = { caller: i.principal?.name ?? null, role, needs: i.permission, vault: i.vault.name, encryptionKey: key.present ? 'present' : 'missing' };
  if (role !== null && !allows(role, i.permission)) {
    return result('account', 'fail', `${i.principal?.name} has role ${role}, which lacks the ${i.permission} permission this needs`, measured, 'ask an owner for a role that allows it (operators fail over; contributors also configure)');
  }
  if (!key.present) {
    return result('account', 'fail', `the vault's encryption key is missing (${key.path})`, measured, `restore ${key.path} from its backup; without it encrypted recovery points cannot be read`);
  }
  if (key.mode !== undefined && (key.mode & 0o077) !== 0) {
    return result('account', 'warning', `the vault's encryption key ${key.path} is readable by others (mode ${key.mode.toString(8)})`, measured, `chmod 600 ${key.path}`);
  }
  return result('account', 'pass', `${i.principal?.name ?? 'the vault'} may do this in vault '${i.vault.name}'; its encryption key is present`, measured);
}

/** 2. Vault location: the vault should live at the recovery site, or a primary outage leaves nobody to fail over. */
export function vaultLocationCheck(i: CheckInput, siteName: (id: string) => string): CheckResult {
  const at = i.vault.locationSiteId;
  const measured = { vaultSite: at ? siteName(at) : null, targetSite: i.target.name, sourceSite: i.source?.name ?? null };
  if (at === null) {
    return result('vault-location', 'warning', `where vault '${i.vault.name}' lives is not recorded`, measured, `record it with \`refuge vault set-location ${i.target.name}\` (and keep the vault at the recovery site)`);
  }
  if (at === i.target.id) return result('vault-location', 'pass', `the vault lives at the recovery site '${i.target.name}'`, measured);
  if (i.source && at === i.source.id) {
    return result('vault-location', 'warning', `the vault lives at the primary site '${i.source.name}': if that site is lost, nobody is left to run the failover`, measured, `move the vault to '${i.target.name}' (run it there and \`refuge vault set-location ${i.target.name}\`)`);
  }
  return result('vault-location', 'pass', `the vault lives at '${siteName(at)}', away from the primary site`, measured);
}
