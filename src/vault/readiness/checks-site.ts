import type { Machine, Replication, Site } from '../model.js';
import { result, type CheckInput, type CheckResult } from './types.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
interface Resources {
  vcpus: number;
  memoryMiB: number;
  diskGiB: number;
}
const RESOURCE_WORDS: Record<keyof Resources, string> = { vcpus: 'vCPUs', memoryMiB: 'MiB of memory', diskGiB: 'GiB of disk' };

const needsOf = (m: Machine): Resources => ({ vcpus: m.cpus, memoryMiB: m.memoryMiB, diskGiB: Math.ceil(m.disks.reduce((n, d) => n + d.sizeBytes, 0) / GiB) });
const sum = (rs: Resources[]): Resources => rs.reduce((a, b) => ({ vcpus: a.vcpus + b.vcpus, memoryMiB: a.memoryMiB + b.memoryMiB, diskGiB: a.diskGiB + b.diskGiB }), { vcpus: 0, memoryMiB: 0, diskGiB: 0 });
const minus = (a: Resources, b: Resources): Resources => ({ vcpus: a.vcpus - b.vcpus, memoryMiB: a.memoryMiB - b.memoryMiB, diskGiB: a.diskGiB - b.diskGiB });

/** Machines a site already runs for replications: failed-over machines and test failover copies. */
function running(reps: Replication[], machines: Map<string, Machine>): Machine[] {
  const out: Machine[] = [];
  for (const r of reps) {
    const m = machines.get(r.machineId);
    if (!m) continue;
    if (r.state === 'failing-over' || r.state === 'failed-over' || r.state === 'failover-committed') out.push(m);
    if (r.testFailoverState !== 'none') out.push(m);
  }
  return out;
}

function shortfall(needs: Resources, has: Resources): string[] {
  return (Object.keys(RESOURCE_WORDS) as (keyof Resources)[]).filter((k) => needs[k] > has[k]).map((k) => `needs ${needs[k]} ${RESOURCE_WORDS[k]}, has ${Math.max(0, has[k])} free`);
}

/** Addresses each target network must give, and NICs no mapping covers. */
function addressDemand(i: CheckInput, machines: Machine[]): { problems: string[]; unmapped: string[]; perNetwork: Record<string, { needs: number; has: number }> } {
  const perNetwork: Record<string, { needs: number; has: number }> = {};
  const unmapped: string[] = [];
  for (const m of machines) {
    for (const nic of m.nics) {
      const map = i.mappings.find((x) => x.sourceSiteId === m.siteId && x.sourceNetwork === nic.network && x.targetSiteId === i.target.id);
      if (!map) {
        unmapped.push(`${m.name}/${nic.name} (network '${nic.network}')`);
        continue;
      }
      const net = i.target.networks.find((n) => n.name === map.targetNetwork);
      const entry = (perNetwork[map.targetNetwork] ??= { needs: 0, has: net?.addresses ?? 0 });
      entry.needs++;
    }
  }
  const problems = Object.entries(perNetwork).filter(([, v]) => v.needs > v.has).map(([n, v]) => `network '${n}' needs ${v.needs} addresses, has ${v.has}`);
  return { problems, unmapped, perNetwork };
}

/**
 * 3. Target capacity: the target site must hold what fails over now (against what it has free: capacity minus the
 * failed-over machines and test copies it already runs), and everything that targets it at once (against its
 * capacity), counting test failover copies; addresses per network through the network mappings. The shortfall is
 * exact ("needs 24 vCPUs, has 16 free"); capacity is raised on the site.
 */
export function targetCapacityCheck(i: CheckInput): CheckResult {
  const site: Site = i.target;
  const inUse = sum(running(i.siteReplications, i.siteMachines).map(needsOf));
  const free = minus(site.capacity, inUse);
  const now = sum(i.machines.map(needsOf));
  const counted = new Set(i.siteReplications.map((r) => r.machineId));
  const allMachines = [...[...counted].flatMap((id) => i.siteMachines.get(id) ?? []), ...i.machines.filter((m) => !counted.has(m.id))];
  const testCopies = i.siteReplications.filter((r) => r.testFailoverState !== 'none').flatMap((r) => i.siteMachines.get(r.machineId) ?? []);
  const all = sum([...allMachines, ...testCopies].map(needsOf));
  const addresses = addressDemand(i, allMachines);
  const measured = { site: site.name, capacity: site.capacity, inUse, free, needsNow: now, needsAtOnce: all, addresses: addresses.perNetwork };
  const remediation = `raise the capacity of site '${site.name}' (\`refuge site update ${site.name} --vcpus N --memory-mib N --disk-gib N\`) or fail over fewer machines there`;

  const immediate = shortfall(now, free);
  const failingOver = i.trigger === 'failover' || i.trigger === 'test-failover';
  if (immediate.length > 0) return result('target-capacity', 'fail', `site '${site.name}' ${immediate.join('; ')}`, measured, remediation);
  const atOnce = shortfall(all, site.capacity).map((s) => s.replace(' free', ''));
  if (atOnce.length > 0 || addresses.problems.length > 0) {
    const message = `failing over everything that targets site '${site.name}' at once (${allMachines.length} machines, ${testCopies.length} test copies) ${[...atOnce, ...addresses.problems].join('; ')}`;
    return result('target-capacity', failingOver ? 'warning' : 'fail', message, measured, `${remediation}; add addresses to the target networks`);
  }
  if (addresses.unmapped.length > 0) {
    return result('target-capacity', 'warning', `no network mapping for ${addresses.unmapped.join(', ')} into site '${site.name}'`, measured, `map the networks with \`refuge network-mapping create\``);
  }
  const tight = (Object.keys(RESOURCE_WORDS) as (keyof Resources)[]).filter((k) => site.capacity[k] > 0 && all[k] / site.capacity[k] > 0.8);
  if (tight.length > 0) {
    return result('target-capacity', 'warning', `site '${site.name}' would be over 80% full with everything failed over (${tight.map((k) => `${all[k]}/${site.capacity[k]} ${RESOURCE_WORDS[k]}`).join(', ')})`, measured, remediation);
  }
  return result('target-capacity', 'pass', `site '${site.name}' has room: ${free.vcpus} vCPUs, ${free.memoryMiB} MiB, ${free.diskGiB} GiB free; all that targets it needs ${all.vcpus} vCPUs, ${all.memoryMiB} MiB, ${all.diskGiB} GiB`, measured);
}

/** ASR's disk limits, which Refuge keeps as its own supported maximum. */
export const DISK_LIMITS = { maxDisks: 64, maxDiskBytes: 32 * 1024 * GiB, maxOsDiskBytes: 4095 * GiB };

/**
 * 4. Storage scalability: target disks and the store's layout derive from the source (the defaults path); the
 * measured churn (bytes changed per second over the last hour of points) must fit the store's and the link's
 * throughput and the policy's bandwidth, or the RPO target will break; disk sizes and counts within limits.
 */
export function storageScalabilityCheck(i: CheckInput): CheckResult {
  const points = i.recentPoints;
  const span = points.length >= 2 ? (Date.parse(points.at(-1)?.capturedAt ?? '') - Date.parse(points[0]?.capturedAt ?? '')) / 1000 : 0;
  const changed = points.slice(1).reduce((n, p) => n + p.changedBytes, 0);
  const churnMiBps = span > 0 ? changed / span / MiB : null;
  const limits = i.target.limits;
  const bounds = [
    ...(limits.storeThroughputMiBps !== undefined ? [{ what: `the replica store of '${i.target.name}'`, value: limits.storeThroughputMiBps }] : []),
    ...(limits.linkThroughputMiBps !== undefined ? [{ what: `the link into '${i.target.name}'`, value: limits.linkThroughputMiBps }] : []),
    ...(i.policy?.bandwidthMiBps ? [{ what: `policy '${i.policy.name}' bandwidth`, value: i.policy.bandwidthMiBps }] : []),
  ];
  const disks = i.machines.flatMap((m) => m.disks.map((d, n) => ({ machine: m.name, name: d.name, sizeBytes: d.sizeBytes, os: n === 0 })));
  const measured = { churnMiBps: churnMiBps === null ? null : Number(churnMiBps.toFixed(3)), overSeconds: span, points: points.length, limits: bounds, disks: disks.length, layout: 'derived from the source (defaults)' };
  const tooBig = disks.filter((d) => d.sizeBytes > (d.os ? DISK_LIMITS.maxOsDiskBytes : DISK_LIMITS.maxDiskBytes));
  const tooMany = i.machines.filter((m) => m.disks.length > DISK_LIMITS.maxDisks);
  if (tooBig.length > 0 || tooMany.length > 0) {
    const what = [...tooBig.map((d) => `${d.machine}/${d.name} is ${Math.ceil(d.sizeBytes / GiB)} GiB (limit ${d.os ? 4095 : 32768} GiB)`), ...tooMany.map((m) => `${m.name} has ${m.disks.length} disks (limit 64)`)];
    return result('storage-scalability', 'fail', what.join('; '), measured, 'split the data over smaller disks or fewer machines');
  }
  if (churnMiBps === null) return result('storage-scalability', 'pass', 'target disks and store layout derived from the source (defaults); no churn measured yet', measured);
  const tightest = bounds.sort((a, b) => a.value - b.value)[0];
  const churn = `churn ${churnMiBps.toFixed(2)} MiB/s over the last ${Math.round(span)} s`;
  if (tightest && churnMiBps > tightest.value) {
    return result('storage-scalability', 'fail', `${churn} is above ${tightest.what} (${tightest.value} MiB/s): the RPO target will break`, measured, 'raise the throughput (faster store, wider link, higher policy bandwidth) or reduce the write load on the machine');
  }
  if (tightest && churnMiBps > 0.8 * tightest.value) {
    return result('storage-scalability', 'warning', `${churn} is over 80% of ${tightest.what} (${tightest.value} MiB/s): the RPO will suffer at peaks`, measured, 'plan more throughput before the churn grows');
  }
  return result('storage-scalability', 'pass', `${churn}${tightest ? ` fits ${tightest.what} (${tightest.value} MiB/s)` : ' (no throughput limit configured)'}`, measured);
}
