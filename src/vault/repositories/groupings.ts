import type { Kysely } from 'kysely';
import { notFound } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import type { Database } from '../db/schema.js';
import type { ConsistencyGroup, NetworkMapping, PlanGroup, RecoveryPlan } from '../model.js';
import { inUse, insertUnique, paged, type Page } from './common.js';

/** Consistency groups: replications whose points are cut at the same instant (membership is on the replication). */
export class ConsistencyGroupRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async create(vaultId: string, name: string): Promise<ConsistencyGroup> {
    const g = { id: newId('grp'), vaultId, name, createdAt: new Date().toISOString() };
    await insertUnique('consistency group', name, () => this.db.insertInto('consistencyGroups').values(g).execute());
    return g;
  }

  list(vaultId: string, page?: Page): Promise<ConsistencyGroup[]> {
    return paged(this.db.selectFrom('consistencyGroups').selectAll().where('vaultId', '=', vaultId), page).execute();
  }

  async get(vaultId: string, name: string): Promise<ConsistencyGroup> {
    const g = await this.db.selectFrom('consistencyGroups').selectAll().where('vaultId', '=', vaultId).where('name', '=', name).executeTakeFirst();
    if (!g) throw notFound('consistency group', name);
    return g;
  }

  async delete(g: ConsistencyGroup): Promise<void> {
    const member = await this.db.selectFrom('replications').select('name').where('groupId', '=', g.id).executeTakeFirst();
    if (member) throw inUse('consistency group', g.name, `replication '${member.name}'`);
    await this.db.deleteFrom('consistencyGroups').where('id', '=', g.id).execute();
  }
}

export class NetworkMappingRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async create(input: Omit<NetworkMapping, 'id' | 'createdAt'>): Promise<NetworkMapping> {
    const m: NetworkMapping = { id: newId('nmap'), createdAt: new Date().toISOString(), ...input };
    await insertUnique('network mapping', input.name, () => this.db.insertInto('networkMappings').values(m).execute());
    return m;
  }

  list(vaultId: string, page?: Page & { sourceSiteId?: string; targetSiteId?: string }): Promise<NetworkMapping[]> {
    let q = this.db.selectFrom('networkMappings').selectAll().where('vaultId', '=', vaultId);
    if (page?.sourceSiteId) q = q.where('sourceSiteId', '=', page.sourceSiteId);
    if (page?.targetSiteId) q = q.where('targetSiteId', '=', page.targetSiteId);
    return paged(q, page).execute();
  }

  async get(vaultId: string, name: string): Promise<NetworkMapping> {
    const m = await this.db.selectFrom('networkMappings').selectAll().where('vaultId', '=', vaultId).where('name', '=', name).executeTakeFirst();
    if (!m) throw notFound('network mapping', name);
    return m;
  }

  async update(m: NetworkMapping, change: Partial<Pick<NetworkMapping, 'targetNetwork' | 'testNetwork'>>): Promise<NetworkMapping> {
    await this.db.updateTable('networkMappings').set(change).where('id', '=', m.id).execute();
    return { ...m, ...change };
  }

  async delete(m: NetworkMapping): Promise<void> {
    await this.db.deleteFrom('networkMappings').where('id', '=', m.id).execute();
  }
}

const toPlan = (r: { id: string; vaultId: string; name: string; description: string; groupsJson: string; createdAt: string; updatedAt: string }): RecoveryPlan => ({
  id: r.id,
  vaultId: r.vaultId,
  name: r.name,
  description: r.description,
  groups: JSON.parse(r.groupsJson) as PlanGroup[],
  createdAt: r.createdAt,
  updatedAt: r.updatedAt,
});

/** Recovery plans: ordered groups of replications with pre/post actions (stored here; run by orchestration). */
export class RecoveryPlanRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async create(input: { vaultId: string; name: string; description: string; groups: PlanGroup[] }): Promise<RecoveryPlan> {
    const now = new Date().toISOString();
    const row = { id: newId('plan'), vaultId: input.vaultId, name: input.name, description: input.description, groupsJson: JSON.stringify(input.groups), createdAt: now, updatedAt: now };
    await insertUnique('recovery plan', input.name, () => this.db.insertInto('recoveryPlans').values(row).execute());
    return toPlan(row);
  }

  async list(vaultId: string, page?: Page): Promise<RecoveryPlan[]> {
    return (await paged(this.db.selectFrom('recoveryPlans').selectAll().where('vaultId', '=', vaultId), page).execute()).map(toPlan);
  }

  async get(vaultId: string, name: string): Promise<RecoveryPlan> {
    const r = await this.db.selectFrom('recoveryPlans').selectAll().where('vaultId', '=', vaultId).where('name', '=', name).executeTakeFirst();
    if (!r) throw notFound('recovery plan', name);
    return toPlan(r);
  }

  async update(p: RecoveryPlan, change: { description?: string; groups?: PlanGroup[] }): Promise<RecoveryPlan> {
    await this.db
      .updateTable('recoveryPlans')
      .set({ ...(change.description !== undefined ? { description: change.description } : {}), ...(change.groups ? { groupsJson: JSON.stringify(change.groups) } : {}), updatedAt: new Date().toISOString() })
      .where('id', '=', p.id)
      .execute();
    return this.get(p.vaultId, p.name);
  }

  async delete(p: RecoveryPlan): Promise<void> {
    await this.db.deleteFrom('recoveryPlans').where('id', '=', p.id).execute();
  }
}
