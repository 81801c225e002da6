import { Anchor, Group, SegmentedControl, Table } from '@mantine/core';
import { useState } from 'react';
import { Link } from 'react-router';
import { get, inVault, type List } from '../api.js';
import { ErrorAlert, PageTitle, ProgressBar, StateBadge } from '../components.js';
import { time } from '../format.js';
import { usePoll } from '../hooks.js';
import type { Job } from '../types.js';
import { useVault } from '../vault-context.js';

export function Jobs() {
  const vault = useVault();
  const [state, setState] = useState('all');
  const { data, error } = usePoll(() => get<List<Job>>(inVault(vault, `/jobs?limit=100${state === 'all' ? '' : `&state=${state}`}`)), 1500, [vault, state]);
  return (
    <>
      <PageTitle actions={<SegmentedControl aria-label="job state" value={state} onChange={setState} data={['all', 'running', 'waiting', 'failed', 'succeeded']} />}>Jobs</PageTitle>
      <ErrorAlert error={error} />
      <Table striped highlightOnHover>
        <Table.Thead><Table.Tr><Table.Th>Job</Table.Th><Table.Th>State</Table.Th><Table.Th>Progress</Table.Th><Table.Th>Current task</Table.Th><Table.Th>Created</Table.Th></Table.Tr></Table.Thead>
        <Table.Tbody>
          {data?.items.map((j) => {
            const task = j.tasks.find((t) => t.state === 'running' || t.state === 'waiting' || t.state === 'failed');
            return (
              <Table.Tr key={j.id}>
                <Table.Td><Group gap={6}><Anchor component={Link} to={`/jobs/${j.id}`}>{j.type}</Anchor>{typeof j.result.machine === 'string' ? `(${j.result.machine})` : null}</Group></Table.Td>
                <Table.Td><StateBadge state={j.state} /></Table.Td>
                <Table.Td><ProgressBar value={j.progress} label={`progress of job ${j.id}`} /></Table.Td>
                <Table.Td>{task ? `${task.name}${task.message ? `: ${task.message}` : ''}` : '-'}</Table.Td>
                <Table.Td>{time(j.createdAt)}</Table.Td>
              </Table.Tr>
            );
          })}
        </Table.Tbody>
      </Table>
    </>
  );
}
