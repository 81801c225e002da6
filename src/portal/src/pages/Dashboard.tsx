import { LineChart } from '@mantine/charts';
import { Anchor, Card, Group, SimpleGrid, Stack, Table, Text, Title } from '@mantine/core';
import { Link } from 'react-router';
import { get, inVault, type List } from '../api.js';
import { ErrorAlert, PageTitle, ProgressBar, StateBadge } from '../components.js';
import { seconds, time } from '../format.js';
import { usePoll } from '../hooks.js';
import { rpoSeries } from '../rpo.js';
import type { Alert, Job, Point, Replication } from '../types.js';
import { useVault } from '../vault-context.js';

/** Health at a glance: replications by health, RPO over time per replication, running jobs, open alerts. */
export function Dashboard() {
  const vault = useVault();
  const { data, error } = usePoll(async () => {
    const [reps, jobs, waiting, alerts] = await Promise.all([
      get<List<Replication>>(inVault(vault, '/replications')),
      get<List<Job>>(inVault(vault, '/jobs?state=running')),
      get<List<Job>>(inVault(vault, '/jobs?state=waiting')),
      get<List<Alert>>(inVault(vault, '/alerts?state=active')),
    ]);
    const points = await Promise.all(reps.items.map((r) => get<List<Point>>(inVault(vault, `/replications/${r.name}/points?limit=60`))));
    return { reps: reps.items, jobs: [...waiting.items, ...jobs.items], alerts: alerts.items, points: points.map((p) => p.items) };
  }, 3000, [vault]);

  const count = (health: string) => data?.reps.filter((r) => r.health === health).length ?? 0;
  return (
    <>
      <PageTitle>Dashboard</PageTitle>
      <ErrorAlert error={error} />
      <SimpleGrid cols={{ base: 2, md: 4 }} mb="md">
        {[['Replications', data?.reps.length ?? 0, 'gray'], ['Healthy', count('normal'), 'green'], ['Warning', count('warning'), 'yellow'], ['Critical', count('critical'), 'red']].map(([label, n, color]) => (
          <Card withBorder key={label}>
            <Text size="sm" c="dimmed">{label}</Text>
            <Text size="xl" fw={700} c={String(color)} aria-label={`${String(label)} count`}>{n}</Text>
          </Card>
        ))}
      </SimpleGrid>

      <Title order={4} mb="xs">RPO over time</Title>
      {data && data.reps.length === 0 ? <Text c="dimmed" mb="md">No replication yet. <Anchor component={Link} to="/replications/enable">Enable one</Anchor>.</Text> : null}
      <SimpleGrid cols={{ base: 1, lg: 2 }} mb="md">
        {data?.reps.map((r, i) => (
          <Card withBorder key={r.name}>
            <Group justify="space-between" mb="xs">
              <Anchor component={Link} to={`/replications/${r.name}`}>{r.name}</Anchor>
              <Group gap="xs"><StateBadge state={r.health} /><Text size="sm">RPO {seconds(r.rpo?.seconds)}</Text></Group>
            </Group>
            <div role="figure" aria-label={`RPO of ${r.name}`}>
            <LineChart h={140} data={rpoSeries(data.points[i] ?? [], new Date())} dataKey="at" series={[{ name: 'rpo', label: 'RPO (s)', color: 'blue.6' }]}
              withDots={false} curveType="linear" unit=" s" />
            </div>
          </Card>
        ))}
      </SimpleGrid>

      <SimpleGrid cols={{ base: 1, lg: 2 }}>
        <Stack gap="xs">
          <Title order={4}>Running jobs</Title>
          {data?.jobs.length ? (
            <Table>
              <Table.Tbody>
                {data.jobs.map((j) => (
                  <Table.Tr key={j.id}>
                    <Table.Td><Anchor component={Link} to={`/jobs/${j.id}`}>{j.type}</Anchor></Table.Td>
                    <Table.Td><StateBadge state={j.state} /></Table.Td>
                    <Table.Td><ProgressBar value={j.progress} label={`progress of ${j.type}`} /></Table.Td>
                  </Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          ) : <Text c="dimmed">None.</Text>}
        </Stack>
        <Stack gap="xs">
          <Title order={4}>Open alerts</Title>
          {data?.alerts.length ? (
            <Table>
              <Table.Tbody>
                {data.alerts.map((a) => (
                  <Table.Tr key={a.id}>
                    <Table.Td><StateBadge state={a.severity} /></Table.Td>
                    <Table.Td>{a.subject}</Table.Td>
                    <Table.Td>{a.message}</Table.Td>
                    <Table.Td><Text size="xs" c="dimmed">{time(a.lastAt)}</Text></Table.Td>
                  </Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          ) : <Text c="dimmed">None.</Text>}
        </Stack>
      </SimpleGrid>
    </>
  );
}
