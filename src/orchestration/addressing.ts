import { KeyedQueue } from '../core/concurrency.js';
import { sleep } from '../core/durations.js';
import { RefugeError } from '../core/errors.js';
import type { MachineNic as FabricNic } from '../fabric/provider.js';
import type { VaultRepositories } from '../vault/repositories/index.js';
import type { FailoverRecord, Machine, Replication, Site } from '../vault/model.js';

/**
 * Addresses of recovered machines. A machine keeps its static IPv4 address at the target when that address lies
 * in the target network and no other recovered machine holds it there; otherwise it gets the next free address
 * after it (wrapping around the network), as ASR does. The network and broadcast addresses and the first three
 * host addresses (gateway, host side, DNS in the qemu provider's user networks) are never assigned.
 */

const RESERVED_HOSTS = 3;

const toInt = (ip: string): number => ip.split('.').reduce((n, p) => n * 256 + Number(p), 0);
const toIp = (n: number): string => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');

export function parseCidr(cidr: string): { base: number; size: number } {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(cidr.trim());
  const parts = m ? m.slice(1, 5).map(Number) : [];
  const prefix = m ? Number(m[5]) : -1;
  if (!m || parts.some((p) => p > 255) || prefix < 8 || prefix > 30) {
    throw new RefugeError('invalid_argument', `'${cidr}' is not an IPv4 network in CIDR form with a prefix of /8 to /30`);
  }
  const size = 2 ** (32 - prefix);
  return { base: Math.floor(toInt(parts.join('.')) / size) * size, size };
}

/** The address a machine gets in `cidr`: `wanted` if usable and free, else the next free usable one. */
export function assignAddress(cidr: string, wanted: string | undefined, taken: Iterable<string>): string {
  const { base, size } = parseCidr(cidr);
  const first = base + 1 + RESERVED_HOSTS;
  const last = base + size - 2;
  if (first > last) throw new RefugeError('resource_exhausted', `network ${cidr} has no address left to assign`);
  const used = new Set([...taken].map(toInt));
  const w = wanted ? toInt(wanted) : first;
  let at = w >= first && w <= last ? w : first;
  for (let n = 0; n <= last - first; n++) {
    if (!used.has(at)) return toIp(at);
    at = at === last ? first : at + 1;
  }
  throw new RefugeError('resource_exhausted', `every address of network ${cidr} is held by a recovered machine`);
}

/**
 * The network cards of a machine recovered at `site`: each source network translated through the vault's network
 * mappings (into the test network for a test failover), with its address. A card whose network has no mapping to
 * this site, or whose target network is unknown there, is left out (the machine starts without it); the record's
 * `nics` show what it got.
 */
export async function planNics(repos: VaultRepositories, rep: Replication, machine: Machine, site: Site, kind: FailoverRecord['kind']): Promise<{ fabric: FabricNic[]; record: NonNullable<FailoverRecord['nics']> }> {
  if (machine.nics.length === 0) return { fabric: [], record: [] };
  const mappings = await repos.mappings.list(rep.vaultId, { sourceSiteId: machine.siteId, targetSiteId: site.id });
  const held = await heldAddresses(repos, rep, site);
  const fabric: FabricNic[] = [];
  const record: NonNullable<FailoverRecord['nics']> = [];
  for (const nic of machine.nics) {
    const mapping = mappings.find((m) => m.sourceNetwork === nic.network);
    const target = kind === 'test' ? (mapping?.testNetwork ?? null) : (mapping?.targetNetwork ?? null);
    const network = target ? site.networks.find((n) => n.name === target) : undefined;
    if (!target || !network) continue;
    const taken = held.filter((n) => n.network === target).map((n) => n.ipv4);
    const ipv4 = network.cidr ? assignAddress(network.cidr, nic.ipv4, [...taken, ...record.filter((r) => r.network === target && r.ipv4).map((r) => r.ipv4 as string)]) : undefined;
    fabric.push({ network: target, ...(network.cidr ? { cidr: network.cidr } : {}), ...(ipv4 ? { ipv4 } : {}), ...(kind === 'test' ? { isolated: true } : {}) });
    record.push({ network: target, ...(ipv4 ? { ipv4 } : {}), ...(nic.ipv4 ? { requestedIpv4: nic.ipv4 } : {}) });
  }
  return { fabric, record };
}

type NicRecord = NonNullable<FailoverRecord['nics']>;

/** The addresses the failover records of other replications hold at `site` (test and real recoveries alike). */
async function heldAddresses(repos: VaultRepositories, rep: Replication, site: Site): Promise<{ network: string; ipv4: string }[]> {
  const others = (await repos.replications.list(rep.vaultId, { targetSiteId: site.id })).filter((r) => r.id !== rep.id);
  return others
    .flatMap((r) => [r.failover.test, r.failover.failover])
    .flatMap((f) => (f?.siteId === site.id ? (f.nics ?? []) : []))
    .flatMap((n) => (n.ipv4 ? [{ network: n.network, ipv4: n.ipv4 }] : []));
}

/** The addresses in `nics` that another recovered machine's record at `site` also holds, on the same network. */
async function clashes(repos: VaultRepositories, rep: Replication, site: Site, nics: NicRecord): Promise<string[]> {
  const held = new Set((await heldAddresses(repos, rep, site)).map((n) => `${n.network}/${n.ipv4}`));
  return nics.flatMap((n) => (n.ipv4 && held.has(`${n.network}/${n.ipv4}`) ? [n.ipv4] : []));
}

/** Address choices run one site at a time in this process: a plan's group recovers its machines side by side. */
const choosing = new KeyedQueue();
const MAX_CHOICES = 6;

/**
 * Chooses the addresses of a machine recovered at `site` and records them with `save` (on the replication's
 * failover record, where the next choice sees them). No two recovered machines at a site end up with one address:
 * choices in this process run one at a time per site, and a choice made at the same moment by another vault
 * process (several may share a PostgreSQL database) is caught by reading the records again after saving; the
 * process that finds the clash chooses again, after a random pause so two such processes do not keep colliding.
 */
export async function reserveNics(
  repos: VaultRepositories,
  rep: Replication,
  site: Site,
  kind: FailoverRecord['kind'],
  save: (nics: NicRecord) => Promise<void>,
): Promise<NicRecord> {
  return choosing.run(site.id, async () => {
    for (let attempt = 1; ; attempt++) {
      const { record } = await planNics(repos, rep, await repos.machines.byId(rep.machineId), site, kind);
      await save(record);
      const clash = await clashes(repos, rep, site, record);
      if (clash.length === 0) return record;
      if (attempt === MAX_CHOICES) {
        throw new RefugeError('conflict', `addresses ${clash.join(', ')} at site '${site.name}' were taken by another machine recovered at the same moment, ${MAX_CHOICES} times in a row`, { hint: 'retry the operation' });
      }
      await sleep(20 + Math.random() * 200);
    }
  });
}
