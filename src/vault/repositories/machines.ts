import type { Kysely } from 'kysely';
import { notFound } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import type { AgentReport, HostFacts, MachineFacts } from '../../protocol/schemas.js';
import type { Database } from '../db/schema.js';
import type { Machine } from '../model.js';
import { inUse, paged, type Page } from './common.js';
import { toMachine } from './rows.js';

export interface MachineFilter extends Page {
  siteId?: string;
}

/** Machines, as their agents register them, with the agent's heartbeat, errors and reports. */
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
      nicsJson: JSON.stringify(facts.nics ?? []),
      agentVersion,
      lastHeartbeatAt: now,
    };
    await this.db
      .insertInto('machines')
      .values({ id: newId('mach'), vaultId, name: facts.name, lastAgentError: null, agentReportJson: null, createdAt: now, ...values })
      .onConflict((oc) => oc.columns(['vaultId', 'name']).doUpdateSet(values))
      .execute();
    return this.get(vaultId, facts.name);
  }

  /** Moves a machine to another site (a re-protect: it now runs where it failed over to). */
  async setSite(machineId: string, siteId: string): Promise<void> {
    await this.db.updateTable('machines').set({ siteId }).where('id', '=', machineId).execute();
  }

  async heartbeat(machineId: string, agentVersion: string, lastError: string | null, report?: AgentReport & { clockSkewSeconds?: number }, host?: HostFacts): Promise<void> {
    await this.db
      .updateTable('machines')
      .set({
        lastHeartbeatAt: new Date().toISOString(),
        agentVersion,
        lastAgentError: lastError,
        ...(report ? { agentReportJson: JSON.stringify(report) } : {}),
        ...(host ? { hostFactsJson: JSON.stringify(host) } : {}),
      })
      .where('id', '=', machineId)
      .execute();
  }

  async list(vaultId: string, f: MachineFilter = {}): Promise<Machine[]> {
    let q = this.db.selectFrom('machines').selectAll().where('vaultId', '=', vaultId);
    if (f.siteId) q = q.where('siteId', '=', f.siteId);
    return (await paged(q, f).execute()).map(toMachine);
  }

  async byIds(ids: string[]): Promise<Machine[]> {
    if (ids.length === 0) return [];
    return (await this.db.selectFrom('machines').selectAll().where('id', 'in', ids).execute()).map(toMachine);
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

  /** Forgets a machine that is not replicated (its agent registers it again if it still runs). */
  async delete(m: Machine): Promise<void> {
    const rep = await this.db.selectFrom('replications').select('name').where('machineId', '=', m.id).executeTakeFirst();
    if (rep) throw inUse('machine', m.name, `replication '${rep.name}'`);
    await this.db.deleteFrom('machines').where('id', '=', m.id).execute();
  }
}
