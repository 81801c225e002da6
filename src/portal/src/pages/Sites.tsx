import { Card, Group, Progress, SimpleGrid, Stack, Text } from '@mantine/core';
import { get, inVault, type List } from '../api.js';
import { ErrorAlert, PageTitle } from '../components.js';
import { usePoll } from '../hooks.js';
import type { Machine, Replication, Site } from '../types.js';
import { useVault } from '../vault-context.js';

const GiB = 1024 ** 3;

/** What a site holds for recovered machines: running now (failed over or test copies) and reserved for a failover. */
function usage(site: string, reps: Replication[], machines: Map<string, Machine>) {
  const sum = (rs: Replication[]) => rs.reduce((t, r) => {
    const m = machines.get(r.machine);
    if (!m) return t;
    return { vcpus: t.vcpus + m.cpus, memoryMiB: t.memoryMiB + m.memoryMiB, diskGiB: t.diskGiB + m.disks.reduce((s, d) => s + d.sizeBytes, 0) / GiB };
  }, { vcpus: 0, memoryMiB: 0, diskGiB: 0 });
  const targeting = reps.filter((r) => r.targetSite === site);
  const running = targeting.filter((r) => r.testFailoverState !== 'none' || ['failing-over', 'failed-over', 'failover-committed'].includes(r.state));
  return { running: sum(running), reserved: sum(targeting), replications: targeting.length };
}

export function Sites() {
  const vault = useVault();
  const { data, error } = usePoll(async () => {
    const [sites, reps, machines] = await Promise.all([
      get<List<Site>>(inVault(vault, '/sites')),
      get<List<Replication>>(inVault(vault, '/replications')),
      get<List<Machine>>(inVault(vault, '/machines')),
    ]);
    return { sites: sites.items, reps: reps.items, machines: new Map(machines.items.map((m) => [m.name, m])) };
  }, 5000, [vault]);

  return (
    <>
      <PageTitle>Sites</PageTitle>
      <ErrorAlert error={error} />
      <SimpleGrid cols={{ base: 1, md: 2 }}>
        {data?.sites.map((s) => {
          const u = usage(s.name, data.reps, data.machines);
          const rows: [string, number, number, number, string][] = [
            ['vCPUs', u.running.vcpus, u.reserved.vcpus, s.capacity.vcpus, ''],
            ['Memory', u.running.memoryMiB, u.reserved.memoryMiB, s.capacity.memoryMiB, ' MiB'],
            ['Disk', u.running.diskGiB, u.reserved.diskGiB, s.capacity.diskGiB, ' GiB'],
          ];
          return (
            <Card withBorder key={s.name} aria-label={`site ${s.name}`}>
              <Group justify="space-between" mb="xs">
                <Text fw={700}>{s.name}</Text>
                <Text size="sm" c="dimmed">{s.provider} fabric, {u.replications} replication(s) target it, networks: {s.networks.map((n) => n.name).join(', ') || 'none'}</Text>
              </Group>
              <Stack gap="xs">
                {rows.map(([label, running, reserved, cap, unit]) => (
                  <div key={label}>
                    <Text size="sm">{label}: {fmt(running)}{unit} in use, {fmt(reserved)}{unit} needed for a failover of all, of {cap}{unit}</Text>
                    <Progress.Root size="lg" aria-label={`${label} of ${s.name}`}>
                      <Progress.Section value={pct(running, cap)} color="blue" />
                      <Progress.Section value={Math.max(0, pct(reserved, cap) - pct(running, cap))} color="blue.2" />
                    </Progress.Root>
                  </div>
                ))}
              </Stack>
            </Card>
          );
        })}
      </SimpleGrid>
    </>
  );
}

const pct = (v: number, cap: number) => (cap > 0 ? Math.min(100, (v / cap) * 100) : 0);
const fmt = (v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(2));
