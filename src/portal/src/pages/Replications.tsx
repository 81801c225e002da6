import { Anchor, Button, Table, Text } from '@mantine/core';
import { Link } from 'react-router';
import { get, inVault, type List } from '../api.js';
import { ErrorAlert, PageTitle, StateBadge } from '../components.js';
import { bytes, seconds } from '../format.js';
import { usePoll } from '../hooks.js';
import type { Replication } from '../types.js';
import { useVault } from '../vault-context.js';

export function Replications() {
  const vault = useVault();
  const { data, error } = usePoll(() => get<List<Replication>>(inVault(vault, '/replications')), 2000, [vault]);
  return (
    <>
      <PageTitle actions={<Button component={Link} to="/replications/enable">Enable replication</Button>}>Replications</PageTitle>
      <ErrorAlert error={error} />
      {data?.items.length === 0 ? <Text c="dimmed">No replication yet.</Text> : null}
      <Table striped highlightOnHover>
        <Table.Thead>
          <Table.Tr><Table.Th>Name</Table.Th><Table.Th>State</Table.Th><Table.Th>Health</Table.Th><Table.Th>RPO</Table.Th><Table.Th>Source → target</Table.Th><Table.Th>Progress</Table.Th><Table.Th>Allowed</Table.Th></Table.Tr>
        </Table.Thead>
        <Table.Tbody>
          {data?.items.map((r) => (
            <Table.Tr key={r.name}>
              <Table.Td><Anchor component={Link} to={`/replications/${r.name}`}>{r.name}</Anchor></Table.Td>
              <Table.Td><StateBadge state={r.state} />{r.testFailoverState !== 'none' ? <StateBadge state={`test ${r.testFailoverState}`} /> : null}</Table.Td>
              <Table.Td><StateBadge state={r.health} /></Table.Td>
              <Table.Td>{seconds(r.rpo?.seconds)}</Table.Td>
              <Table.Td>{r.sourceSite} → {r.targetSite}</Table.Td>
              <Table.Td>{r.progress ? `${r.progress.phase} ${bytes(r.progress.doneBytes)} / ${bytes(r.progress.totalBytes)}` : '-'}</Table.Td>
              <Table.Td>{r.allowedOperations.join(', ') || 'none'}</Table.Td>
            </Table.Tr>
          ))}
        </Table.Tbody>
      </Table>
    </>
  );
}
