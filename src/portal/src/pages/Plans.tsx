import { Anchor, Button, Group, Table, Text, Title } from '@mantine/core';
import { useState } from 'react';
import { Link, useNavigate } from 'react-router';
import { api, get, inVault, type List } from '../api.js';
import { ErrorAlert, PageTitle, ProgressBar, ReadinessTable, StateBadge } from '../components.js';
import { planOf, time } from '../format.js';
import { usePoll } from '../hooks.js';
import type { Job, Plan, ReadinessReport } from '../types.js';
import { useVault } from '../vault-context.js';

/** Recovery plans, their runs (each run is a job: open it to follow it and approve its manual steps). */
export function Plans() {
  const vault = useVault();
  const navigate = useNavigate();
  const [report, setReport] = useState<ReadinessReport | null>(null);
  const [opError, setOpError] = useState<Error | null>(null);
  const { data, error } = usePoll(async () => {
    const [plans, jobs] = await Promise.all([get<List<Plan>>(inVault(vault, '/recovery-plans')), get<List<Job>>(inVault(vault, '/jobs?limit=100'))]);
    return { plans: plans.items, runs: jobs.items.filter((j) => planOf(j) !== undefined) };
  }, 3000, [vault]);
  const check = async (plan: string) => {
    try {
      setReport(await api<ReadinessReport>('POST', inVault(vault, '/readiness'), { plan }));
    } catch (err) {
      setOpError(err as Error);
    }
  };
  const runPlan = async (plan: string, op: string) => {
    try {
      const job = await api<Job>('POST', inVault(vault, `/recovery-plans/${plan}/${op}`), {});
      void navigate(`/jobs/${job.id}`);
    } catch (err) {
      setOpError(err as Error);
    }
  };
  return (
    <>
      <PageTitle actions={<Button component={Link} to="/plans/new">New plan</Button>}>Recovery plans</PageTitle>
      <ErrorAlert error={error ?? opError} />
      {data?.plans.length === 0 ? <Text c="dimmed">No recovery plan yet.</Text> : null}
      <Table striped>
        <Table.Thead><Table.Tr><Table.Th>Plan</Table.Th><Table.Th>Groups</Table.Th><Table.Th>Machines</Table.Th><Table.Th>Actions</Table.Th><Table.Th /></Table.Tr></Table.Thead>
        <Table.Tbody>
          {data?.plans.map((p) => (
            <Table.Tr key={p.name}>
              <Table.Td><Anchor component={Link} to={`/plans/${p.name}`}>{p.name}</Anchor><Text size="xs" c="dimmed">{p.description}</Text></Table.Td>
              <Table.Td>{p.groups.map((g) => g.name).join(' → ')}</Table.Td>
              <Table.Td>{p.groups.reduce((n, g) => n + g.replications.length, 0)}</Table.Td>
              <Table.Td>{p.groups.reduce((n, g) => n + g.pre.length + g.post.length, 0)}</Table.Td>
              <Table.Td>
                <Group gap="xs">
                  <Button size="xs" variant="light" onClick={() => void check(p.name)}>Check readiness</Button>
                  {(p.allowedOperations ?? []).map((op) => <Button size="xs" key={op} onClick={() => void runPlan(p.name, op)}>{op}</Button>)}
                </Group>
              </Table.Td>
            </Table.Tr>
          ))}
        </Table.Tbody>
      </Table>
      {report ? <div style={{ marginTop: 16 }}><ReadinessTable report={report} /></div> : null}
      <Title order={4} mt="lg" mb="xs">Plan runs</Title>
      {data?.runs.length ? (
        <Table>
          <Table.Tbody>
            {data.runs.map((j) => (
              <Table.Tr key={j.id}>
                <Table.Td><Anchor component={Link} to={`/jobs/${j.id}`}>{planOf(j)}: {j.type}</Anchor></Table.Td>
                <Table.Td><StateBadge state={j.state} /></Table.Td>
                <Table.Td><ProgressBar value={j.progress} /></Table.Td>
                <Table.Td>{time(j.createdAt)}</Table.Td>
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      ) : <Text c="dimmed">No run yet.</Text>}
    </>
  );
}
