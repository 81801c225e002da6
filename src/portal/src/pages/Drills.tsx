import { Anchor, Table, Text } from '@mantine/core';
import { Link } from 'react-router';
import { get, inVault, type List } from '../api.js';
import { ErrorAlert, PageTitle, StateBadge } from '../components.js';
import { seconds, time } from '../format.js';
import { usePoll } from '../hooks.js';
import type { Job, Replication } from '../types.js';
import { useVault } from '../vault-context.js';

/** A drill is a test failover: when each replication was last drilled and the RTO it showed (request to running). */
export function Drills() {
  const vault = useVault();
  const { data, error } = usePoll(async () => {
    const [reps, jobs] = await Promise.all([
      get<List<Replication>>(inVault(vault, '/replications')),
      get<List<Job>>(inVault(vault, '/jobs?type=test-failover&limit=200')),
    ]);
    return reps.items.map((r) => {
      const drills = jobs.items.filter((j) => j.replicationId === r.id);
      const last = drills[0];
      const rto = last && typeof last.result.runningAt === 'string' ? (Date.parse(last.result.runningAt) - Date.parse(last.createdAt)) / 1000 : null;
      return { rep: r, last, rto, count: drills.length };
    });
  }, 5000, [vault]);
  return (
    <>
      <PageTitle>Drills</PageTitle>
      <ErrorAlert error={error} />
      <Text size="sm" c="dimmed" mb="sm">Each test failover is a drill: the copy starts isolated at the recovery site while replication goes on. RTO here is from the request to the machine running.</Text>
      <Table striped>
        <Table.Thead><Table.Tr><Table.Th>Replication</Table.Th><Table.Th>Drills</Table.Th><Table.Th>Last drill</Table.Th><Table.Th>Result</Table.Th><Table.Th>Last RTO</Table.Th><Table.Th>Test copy</Table.Th></Table.Tr></Table.Thead>
        <Table.Tbody>
          {data?.map(({ rep, last, rto, count }) => (
            <Table.Tr key={rep.name}>
              <Table.Td><Anchor component={Link} to={`/replications/${rep.name}`}>{rep.name}</Anchor></Table.Td>
              <Table.Td>{count}</Table.Td>
              <Table.Td>{last ? <Anchor component={Link} to={`/jobs/${last.id}`}>{time(last.createdAt)}</Anchor> : 'never'}</Table.Td>
              <Table.Td>{last ? <StateBadge state={last.state} /> : '-'}</Table.Td>
              <Table.Td>{seconds(rto)}</Table.Td>
              <Table.Td>{rep.testFailoverState}</Table.Td>
            </Table.Tr>
          ))}
        </Table.Tbody>
      </Table>
    </>
  );
}
