import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import { PolicyRepository, SiteRepository, VaultRepository } from './configuration.js';
import { MachineRepository } from './machines.js';
import { ReplicationRepository } from './replications.js';
import { ConsistencyGroupRepository, NetworkMappingRepository, RecoveryPlanRepository } from './groupings.js';

export interface VaultRepositories {
  db: Kysely<Database>;
  vaults: VaultRepository;
  sites: SiteRepository;
  policies: PolicyRepository;
  machines: MachineRepository;
  replications: ReplicationRepository;
  groups: ConsistencyGroupRepository;
  mappings: NetworkMappingRepository;
  plans: RecoveryPlanRepository;
}

export function createRepositories(db: Kysely<Database>): VaultRepositories {
  return {
    db,
    vaults: new VaultRepository(db),
    sites: new SiteRepository(db),
    policies: new PolicyRepository(db),
    machines: new MachineRepository(db),
    replications: new ReplicationRepository(db),
    groups: new ConsistencyGroupRepository(db),
    mappings: new NetworkMappingRepository(db),
    plans: new RecoveryPlanRepository(db),
  };
}
