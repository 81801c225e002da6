import type { Kysely } from 'kysely';
import { notFound } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import type { Database } from '../db/schema.js';
import type { FabricKind, Policy, SiteFabricSettings, Site, SiteCapacity, SiteConfig, SiteLimits, SiteNetwork, Vault } from '../model.js';
import { inUse, insertUnique, paged, type Page } from './common.js';
import { toPolicy, toSite } from './rows.js';

/**
 * Vaults, sites and policies: the configuration an operator creates. Lookups are by name within a vault; a missing
 * name is a `not_found` error naming the kind and the name; deleting something still in use is refused.
 */
export class VaultRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async create(name: string): Promise<Vault> {
    const row: Vault = { id: newId('vault'), name, locationSiteId: null, createdAt: new Date().toISOString() };
    await insertUnique('vault', name, () => this.db.insertInto('vaults').values(row).execute());
    return row;
  }

  list(page?: Page): Promise<Vault[]> {
    return paged(this.db.selectFrom('vaults').selectAll(), page).execute();
  }

  async get(name: string): Promise<Vault> {
    const row = await this.db.selectFrom('vaults').selectAll().where('name', '=', name).executeTakeFirst();
    if (!row) throw notFound('vault', name, 'list vaults with `refuge vault list`');
    return row;
  }

  async byId(id: string): Promise<Vault> {
    const row = await this.db.selectFrom('vaults').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw notFound('vault', id);
    return row;
  }

  async setLocation(vaultId: string, siteId: string): Promise<void> {
    await this.db.updateTable('vaults').set({ locationSiteId: siteId }).where('id', '=', vaultId).execute();
  }

  /** Deletes an empty vault (no sites left). */
  async delete(vault: Vault): Promise<void> {
    const site = await this.db.selectFrom('sites').select('name').where('vaultId', '=', vault.id).executeTakeFirst();
    if (site) throw inUse('vault', vault.name, `site '${site.name}'`);
    await this.db.transaction().execute(async (trx) => {
      // Registration keys and agent certificates of a vault without sites can only be unused or stale (a machine
      // or a replicator needs a site): they go with it, rather than a foreign key refusing the delete.
      for (const t of ['policies', 'consistencyGroups', 'alertChannels', 'recoveryPlans', 'events', 'alerts', 'readinessReports', 'drillRuns', 'drills', 'registrationKeys', 'agentCertificates'] as const) {
        await trx.deleteFrom(t).where('vaultId', '=', vault.id).execute();
      }
      await trx.deleteFrom('jobTasks').where('jobId', 'in', (eb) => eb.selectFrom('jobs').select('id').where('vaultId', '=', vault.id)).execute();
      await trx.deleteFrom('jobs').where('vaultId', '=', vault.id).execute();
      await trx.deleteFrom('vaults').where('id', '=', vault.id).execute();
    });
  }
}

export interface SiteInput {
  vaultId: string;
  name: string;
  provider: FabricKind;
  config: SiteConfig;
  capacity: SiteCapacity;
  networks?: SiteNetwork[];
  limits?: SiteLimits;
}

export class SiteRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async create(input: SiteInput): Promise<Site> {
    const site: Site = { id: newId('site'), createdAt: new Date().toISOString(), networks: [], limits: {}, ...input };
    await insertUnique('site', input.name, () =>
      this.db
        .insertInto('sites')
        .values({
          id: site.id,
          vaultId: site.vaultId,
          name: site.name,
          provider: site.provider,
          configJson: JSON.stringify(site.config),
          capacityJson: JSON.stringify(site.capacity),
          networksJson: JSON.stringify(site.networks),
          limitsJson: JSON.stringify(site.limits),
          createdAt: site.createdAt,
        })
        .execute(),
    );
    return site;
  }

  async list(vaultId: string, page?: Page): Promise<Site[]> {
    return (await paged(this.db.selectFrom('sites').selectAll().where('vaultId', '=', vaultId), page).execute()).map(toSite);
  }

  async get(vaultId: string, name: string): Promise<Site> {
    const row = await this.db.selectFrom('sites').selectAll().where('vaultId', '=', vaultId).where('name', '=', name).executeTakeFirst();
    if (!row) throw notFound('site', name);
    return toSite(row);
  }

  async byId(id: string): Promise<Site> {
    const row = await this.db.selectFrom('sites').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw notFound('site', id);
    return toSite(row);
  }

  /** Raises or lowers capacity (ASR's "contact support", self-hosted), networks and limits. */
  async update(site: Site, change: { capacity?: SiteCapacity; networks?: SiteNetwork[]; limits?: SiteLimits; fabric?: { provider: FabricKind; settings: SiteFabricSettings } }): Promise<Site> {
    await this.db
      .updateTable('sites')
      .set({
        ...(change.fabric ? { provider: change.fabric.provider, configJson: JSON.stringify({ ...site.config, fabric: change.fabric.settings }) } : {}),
        ...(change.capacity ? { capacityJson: JSON.stringify(change.capacity) } : {}),
        ...(change.networks ? { networksJson: JSON.stringify(change.networks) } : {}),
        ...(change.limits ? { limitsJson: JSON.stringify(change.limits) } : {}),
      })
      .where('id', '=', site.id)
      .execute();
    return this.byId(site.id);
  }

  async delete(site: Site): Promise<void> {
    const usedBy = await this.db.selectFrom('replications').select('name').where((eb) => eb.or([eb('sourceSiteId', '=', site.id), eb('targetSiteId', '=', site.id)])).executeTakeFirst();
    if (usedBy) throw inUse('site', site.name, `replication '${usedBy.name}'`);
    const machine = await this.db.selectFrom('machines').select('name').where('siteId', '=', site.id).executeTakeFirst();
    if (machine) throw inUse('site', site.name, `machine '${machine.name}'`);
    const mapping = await this.db.selectFrom('networkMappings').select('name').where((eb) => eb.or([eb('sourceSiteId', '=', site.id), eb('targetSiteId', '=', site.id)])).executeTakeFirst();
    if (mapping) throw inUse('site', site.name, `network mapping '${mapping.name}'`);
    await this.db.transaction().execute(async (trx) => {
      await trx.updateTable('vaults').set({ locationSiteId: null }).where('locationSiteId', '=', site.id).execute();
      await trx.deleteFrom('sites').where('id', '=', site.id).execute();
    });
  }
}

export type PolicyInput = Omit<Policy, 'id' | 'createdAt' | 'appIntervalSeconds' | 'bandwidthMiBps' | 'chunkSizeKiB'> & Partial<Pick<Policy, 'appIntervalSeconds' | 'bandwidthMiBps' | 'chunkSizeKiB'>>;

export class PolicyRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async create(input: PolicyInput): Promise<Policy> {
    const p: Policy = { id: newId('pol'), createdAt: new Date().toISOString(), appIntervalSeconds: null, bandwidthMiBps: null, chunkSizeKiB: null, ...input };
    const { bandwidthMiBps, chunkSizeKiB, ...rest } = p;
    await insertUnique('policy', input.name, () => this.db.insertInto('policies').values({ ...rest, bandwidthMibps: bandwidthMiBps, chunkSizeKib: chunkSizeKiB }).execute());
    return p;
  }

  async list(vaultId: string, page?: Page): Promise<Policy[]> {
    return (await paged(this.db.selectFrom('policies').selectAll().where('vaultId', '=', vaultId), page).execute()).map(toPolicy);
  }

  async get(vaultId: string, name: string): Promise<Policy> {
    const row = await this.db.selectFrom('policies').selectAll().where('vaultId', '=', vaultId).where('name', '=', name).executeTakeFirst();
    if (!row) throw notFound('policy', name);
    return toPolicy(row);
  }

  async byId(id: string): Promise<Policy> {
    const row = await this.db.selectFrom('policies').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw notFound('policy', id);
    return toPolicy(row);
  }

  async update(p: Policy, change: Partial<Pick<Policy, 'crashIntervalSeconds' | 'retentionHours' | 'rpoThresholdSeconds' | 'appIntervalSeconds' | 'bandwidthMiBps'>>): Promise<Policy> {
    const { bandwidthMiBps, ...rest } = change;
    await this.db.updateTable('policies').set({ ...rest, ...(bandwidthMiBps !== undefined ? { bandwidthMibps: bandwidthMiBps } : {}) }).where('id', '=', p.id).execute();
    return this.byId(p.id);
  }

  async delete(p: Policy): Promise<void> {
    const usedBy = await this.db.selectFrom('replications').select('name').where('policyId', '=', p.id).executeTakeFirst();
    if (usedBy) throw inUse('policy', p.name, `replication '${usedBy.name}'`);
    await this.db.deleteFrom('policies').where('id', '=', p.id).execute();
  }
}
