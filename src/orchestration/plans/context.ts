import type { VaultRepositories } from '../../vault/repositories/index.js';
import type { PlanAction, PlanGroup, Replication } from '../../vault/model.js';
import { PLAN_OPERATION_SPECS, type PlanOperation } from './plan-operations.js';

/** One machine of a plan as its actions see it: where it comes from and what it becomes. */
export interface MachineMapEntry {
  replication: string;
  /** The protected machine's name (at the source). */
  source: string;
  sourceSite: string;
  /** The name the recovered machine runs under (`<name>-test` for a test failover copy). */
  recovered: string;
  recoverySite: string;
  group: string;
  /** Each NIC: the network it lands on at the recovery site (through the network mappings) and its address. */
  addresses: { nic: string; network: string | null; ipv4: string | null }[];
}

/**
 * What every action of a plan run is told (JSON body of a webhook, REFUGE_CONTEXT_JSON of a script): the plan,
 * the operation and its failover type and direction, the group and action, and the machine map of the whole plan.
 */
export interface ActionContext {
  vault: string;
  plan: string;
  job: string;
  operation: PlanOperation;
  failoverType: string;
  direction: string;
  group: { index: number; name: string; replications: string[] };
  action: { name: string; kind: PlanAction['kind']; phase: 'pre' | 'post'; site: 'primary' | 'recovery' };
  /** The site the action acts on (a script's `site`; the recovery site for webhooks and approvals). */
  site: string;
  machines: MachineMapEntry[];
}

/** The machine map of a plan: recorded failover names where a (test) failover ran, predicted names before. */
export async function machineMap(repos: VaultRepositories, vaultId: string, groups: PlanGroup[], op: PlanOperation): Promise<MachineMapEntry[]> {
  const names = groups.flatMap((g) => g.replications);
  const reps = new Map((await repos.replications.list(vaultId, { names, limit: 1000 })).map((r) => [r.name, r]));
  const machines = new Map((await repos.machines.byIds([...reps.values()].map((r) => r.machineId))).map((m) => [m.id, m]));
  const sites = new Map((await repos.sites.list(vaultId, { limit: 1000 })).map((s) => [s.id, s.name]));
  const mappings = await repos.mappings.list(vaultId, { limit: 1000 });
  const test = PLAN_OPERATION_SPECS[op].failoverType === 'test' || op === 'test-failover-cleanup';
  const back = PLAN_OPERATION_SPECS[op].direction === 'recovery-to-primary';
  const out: MachineMapEntry[] = [];
  for (const g of groups) {
    for (const name of g.replications) {
      const rep = reps.get(name);
      if (!rep) continue;
      const machine = machines.get(rep.machineId);
      const [from, to] = back ? [rep.targetSiteId, rep.sourceSiteId] : [rep.sourceSiteId, rep.targetSiteId];
      const record = test ? rep.failover.test : rep.failover.failover;
      out.push({
        replication: rep.name,
        source: machine?.name ?? rep.name,
        sourceSite: sites.get(from) ?? from,
        recovered: record?.machineName ?? recoveredName(rep, test),
        recoverySite: sites.get(record?.siteId ?? to) ?? to,
        group: g.name,
        addresses: (machine?.nics ?? []).map((nic) => {
          const map = mappings.find((m) => m.sourceSiteId === from && m.sourceNetwork === nic.network && m.targetSiteId === to);
          return { nic: nic.name, network: (test ? (map?.testNetwork ?? map?.targetNetwork) : map?.targetNetwork) ?? null, ipv4: nic.ipv4 ?? null };
        }),
      });
    }
  }
  return out;
}

/** The name OperationService gives the recovered machine (kept in step with orchestration/operations.ts). */
const recoveredName = (rep: Replication, test: boolean) => (test ? `${rep.name}-test` : rep.name);

/**
 * The environment a script action runs with: a clean one (PATH, HOME, LANG of the vault, never its other
 * variables, which may hold secrets) plus the context. The contract is documented in ./README.md.
 */
export function scriptEnvironment(c: ActionContext): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: process.env.HOME ?? '/',
    LANG: process.env.LANG ?? 'C.UTF-8',
    REFUGE_VAULT: c.vault,
    REFUGE_PLAN: c.plan,
    REFUGE_JOB_ID: c.job,
    REFUGE_OPERATION: c.operation,
    REFUGE_FAILOVER_TYPE: c.failoverType,
    REFUGE_DIRECTION: c.direction,
    REFUGE_GROUP: c.group.name,
    REFUGE_GROUP_INDEX: String(c.group.index),
    REFUGE_GROUP_MACHINES: c.group.replications.join(' '),
    REFUGE_ACTION: c.action.name,
    REFUGE_PHASE: c.action.phase,
    REFUGE_SITE: c.site,
    REFUGE_SITE_ROLE: c.action.site,
    // One word per machine: source=recovered@site/ipv4 (ipv4 empty when the machine has no static address).
    REFUGE_MACHINE_MAP: c.machines.map((m) => `${m.source}=${m.recovered}@${m.recoverySite}/${m.addresses.find((a) => a.ipv4)?.ipv4 ?? ''}`).join(' '),
    REFUGE_CONTEXT_JSON: JSON.stringify(c),
  };
}
