import type { Kysely } from 'kysely';
import { RefugeError, notFound } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import type { MachineFacts } from '../../protocol/schemas.js';
import type { Database } from '../db/schema.js';
import type { Machine, Policy, Site, SiteCapacity, SiteConfig, Vault } from '../model.js';
import { toMachine, toSite } from './rows.js';

/**
 * Vaults, sites, policies and machines: the configuration an operator (or an agent, for machines) creates.
 * Lookups are by name within a vault; a missing name is a `not_found` error naming the kind and the name.
 */

const isUniqueViolation = (err: unknown): boolean =>
  /UNIQUE constraint failed|duplicate key value/.test(String((err as Error)?.message));

async function insertUnique<T>(kind: string, name: string, insert: () => Promise<T>): Promise<T> {
  try {
    return await insert();
  } catch (err) {
    if (isUniqueViolation(err)) throw new RefugeError('already_exists', `${kind} '${name}' already exists`);
    throw err;
  }
}

export class VaultRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async create(name: string): Promise<Vault> {
    const row: Vault = { id: newId('vault'), name, locationSiteId: null, createdAt: new Date().toISOString() };
    await insertUnique('vault', name, () => this.db.insertInto('vaults').values(row).execute());
    return row;
  }

  list(): Promise<Vault[]> {
    return this.db.selectFrom('vaults').selectAll().orderBy('name').execute();
  }

  async get(name: string): Promise<Vault> {
    const row = await this.db.selectFrom('vaults').selectAll().where('name', '=', name).executeTakeFirst();
    if (!row) throw notFound('vault', name, 'list vaults with `refuge vault list`');
    return row;
  }

  async setLocation(vaultId: string, siteId: string): Promise<void> {
    await this.db.updateTable('vaults').set({ locationSiteId: siteId }).where('id', '=', vaultId).execute();
  }
}

export class SiteRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async create(input: { vaultId: string; name: string; provider: 'qemu'; config: SiteConfig; capacity: SiteCapacity }): Promise<Site> {
    const site: Site = { id: newId('site'), createdAt: new Date().toISOString(), ...input };
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
          createdAt: site.createdAt,
        })
        .execute(),
    );
    return site;
  }

  async list(vaultId: string): Promise<Site[]> {
    return (await this.db.selectFrom('sites').selectAll().where('vaultId', '=', vaultId).orderBy('name').execute()).map(toSite);
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
}

export class PolicyRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async create(input: Omit<Policy, 'id' | 'createdAt'>): Promise<Policy> {
    const policy: Policy = { id: newId('pol'), createdAt: new Date().toISOString(), ...input };
    await insertUnique('policy', input.name, () => this.db.insertInto('policies').values(policy).execute());
    return policy;
  }

  list(vaultId: string): Promise<Policy[]> {
    return this.db.selectFrom('policies').selectAll().where('vaultId', '=', vaultId).orderBy('name').execute();
  }

  async get(vaultId: string, name: string): Promise<Policy> {
    const row = await this.db.selectFrom('policies').selectAll().where('vaultId', '=', vaultId).where('name', '=', name).executeTakeFirst();
    if (!row) throw notFound('policy', name);
    return row;
  }

  async byId(id: string): Promise<Policy> {
    const row = await this.db.selectFrom('policies').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw notFound('policy', id);
    return row;
  }
}

export class MachineRepository {
  constructor(private readonly db: Kysely<Database>) {}

  /** Registers a machine, or refreshes its facts when an agent registers it again (same vault and name). */
  async register(vaultId: string, siteId: string, agentVersion: string, facts: MachineFacts): Promise<Machine> {
    const now = new Date().toISOString();
    const values = {
      siteId,
      hostname: facts.hostname,
      os: facts.os,
      cpus: facts.cpus,
      memoryMib: facts.memoryMiB,
      disksJson: JSON.stringify(facts.disks),
      bootJson: JSON.stringify(facts.boot),
      agentVersion,
      lastHeartbeatAt: now,
    };
    await this.db
      .insertInto('machines')
      .values({ id: newId('mach'), vaultId, name: facts.name, lastAgentError: null, createdAt: now, ...values })
      .onConflict((oc) => oc.columns(['vaultId', 'name']).doUpdateSet(values))
      .execute();
    return this.get(vaultId, facts.name);
  }

  async heartbeat(machineId: string, agentVersion: string, lastError: string | null): Promise<void> {
    await this.db
      .updateTable('machines')
      .set({ lastHeartbeatAt: new Date().toISOString(), agentVersion, lastAgentError: lastError })
      .where('id', '=', machineId)
      .execute();
  }

  async list(vaultId: string): Promise<Machine[]> {
    return (await this.db.selectFrom('machines').selectAll().where('vaultId', '=', vaultId).orderBy('name').execute()).map(toMachine);
  }

  async get(vaultId: string, name: string): Promise<Machine> {
    const row = await this.db.selectFrom('machines').selectAll().where('vaultId', '=', vaultId).where('name', '=', name).executeTakeFirst();
    if (!row) throw notFound('machine', name, 'a machine appears once its agent registers with the vault');
    return toMachine(row);
  }

  async byId(id: string): Promise<Machine> {
    const row = await this.db.selectFrom('machines').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw notFound('machine', id);
    return toMachine(row);
  }
}
