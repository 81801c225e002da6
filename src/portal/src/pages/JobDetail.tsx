import { Alert, Anchor, Button, Card, Code, Group, Table, Text, Textarea } from '@mantine/core';
import { useState } from 'react';
import { Link, useParams } from 'react-router';
import { api, get, inVault } from '../api.js';
import { ErrorAlert, PageTitle, ProgressBar, StateBadge } from '../components.js';
import { planOf, time } from '../format.js';
import { usePoll } from '../hooks.js';
import type { Job } from '../types.js';
import { useVault } from '../vault-context.js';

/**
 * A job (an operation, or a recovery plan's run) with its tasks and live progress. A task waiting for input (a
 * manual step) shows its prompt with Approve and Reject; cancel and restart appear when the job allows them.
 */
export function JobDetail() {
  const vault = useVault();
  const id = useParams().id ?? '';
  const [comment, setComment] = useState('');
  const [opError, setOpError] = useState<Error | null>(null);
  const { data: job, error, reload } = usePoll(() => get<Job>(inVault(vault, `/jobs/${id}`)), 1000, [vault, id]);
  const act = async (op: string, body?: unknown) => {
    setOpError(null);
    try {
      await api('POST', inVault(vault, `/jobs/${id}/${op}`), body);
      await reload();
    } catch (err) {
      setOpError(err as Error);
    }
  };
  const waiting = job?.tasks.find((t) => t.state === 'waiting');
  const plan = job ? planOf(job) : undefined;
  return (
    <>
      <PageTitle actions={job?.allowedOperations.filter((o) => o !== 'resume').map((op) => (
        <Button key={op} variant="light" color={op === 'cancel' ? 'red' : undefined} onClick={() => void act(op)}>{op === 'cancel' ? 'Cancel job' : 'Restart job'}</Button>
      ))}>Job {job?.type ?? ''}</PageTitle>
      <ErrorAlert error={error ?? opError} />
      {job ? (
        <>
          <Group mb="md">
            <StateBadge state={job.state} label="job state" />
            <ProgressBar value={job.progress} label="job progress" />
            {plan ? <Text size="sm">run of recovery plan <Anchor component={Link} to={`/plans/${plan}`}>{plan}</Anchor></Text> : null}
            <Text size="sm" c="dimmed">{job.id} · created {time(job.createdAt)}</Text>
          </Group>
          {waiting && job.allowedOperations.includes('resume') ? (
            <Card withBorder mb="md" bg="yellow.0" aria-label="manual step">
              <Text fw={600}>Waiting for approval: {waiting.name}</Text>
              <Text mb="sm">{waiting.message}</Text>
              <Textarea label="Comment (kept with the answer)" value={comment} onChange={(e) => setComment(e.currentTarget.value)} mb="sm" autosize minRows={1} />
              <Group>
                <Button color="green" onClick={() => void act('resume', { approved: true, ...(comment ? { comment } : {}) })}>Approve</Button>
                <Button color="red" variant="light" onClick={() => void act('resume', { approved: false, ...(comment ? { comment } : {}) })}>Reject</Button>
              </Group>
            </Card>
          ) : null}
          {job.error ? (
            <Alert color="red" title={job.error.code} mb="md">{job.error.message}{job.error.hint ? <Text size="sm">hint: {job.error.hint}</Text> : null}</Alert>
          ) : null}
          <Table withTableBorder>
            <Table.Thead><Table.Tr><Table.Th>#</Table.Th><Table.Th>Task</Table.Th><Table.Th>State</Table.Th><Table.Th>Progress</Table.Th><Table.Th>Message</Table.Th><Table.Th>Ended</Table.Th></Table.Tr></Table.Thead>
            <Table.Tbody>
              {job.tasks.map((t) => (
                <Table.Tr key={t.seq}>
                  <Table.Td>{t.seq + 1}</Table.Td>
                  <Table.Td>{t.name}</Table.Td>
                  <Table.Td><StateBadge state={t.state} /></Table.Td>
                  <Table.Td><ProgressBar value={t.progress} label={`progress of ${t.name}`} /></Table.Td>
                  <Table.Td>{t.message ?? '-'}{t.input ? <Text size="xs" c="dimmed">answer: {JSON.stringify(t.input)}</Text> : null}</Table.Td>
                  <Table.Td>{time(t.endedAt)}</Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
          {Object.keys(job.result).length > 0 ? <><Text fw={600} mt="md">Result</Text><Code block>{JSON.stringify(job.result, null, 2)}</Code></> : null}
        </>
      ) : null}
    </>
  );
}
