import { Alert, Badge, Group, Progress, Table, Text, Title } from '@mantine/core';
import type { ReactNode } from 'react';
import { ApiError } from './api.js';
import { stateColor } from './format.js';
import type { ReadinessReport } from './types.js';

/** A page's title with its actions on the right. */
export function PageTitle({ children, actions }: { children: ReactNode; actions?: ReactNode }) {
  return (
    <Group justify="space-between" mb="md">
      <Title order={2}>{children}</Title>
      {actions ? <Group>{actions}</Group> : null}
    </Group>
  );
}

export function StateBadge({ state, label }: { state: string; label?: string }) {
  // Never cut to "SUCC…" in a narrow table column: the badge is as wide as its state.
  return <Badge color={stateColor(state)} variant="light" aria-label={label} miw="max-content">{state}</Badge>;
}

/** The vault's error message with its hint, as the CLI prints them. */
export function ErrorAlert({ error }: { error: Error | undefined | null }) {
  if (!error) return null;
  const hint = error instanceof ApiError ? error.hint : undefined;
  return (
    <Alert color="red" title="The vault refused" role="alert" mb="md">
      {error.message}
      {hint ? <Text size="sm" mt={4}>hint: {hint}</Text> : null}
    </Alert>
  );
}

export function ProgressBar({ value, label }: { value: number; label?: string }) {
  return (
    <Group gap="xs" wrap="nowrap">
      <Progress value={Math.max(0, Math.min(100, value * 100))} w={160} aria-label={label ?? 'progress'} />
      <Text size="sm">{Math.round(value * 100)}%</Text>
    </Group>
  );
}

/** One row per check: verdict, the measured value in the message, and the fix. */
export function ReadinessTable({ report }: { report: ReadinessReport }) {
  return (
    <>
      <Group mb="xs">
        <Text fw={600}>Readiness of {report.scope} {report.subject}</Text>
        <StateBadge state={report.worst} />
        <Text size="sm" c="dimmed">{report.trigger}, {new Date(report.createdAt).toLocaleString()}</Text>
      </Group>
      <Table striped withTableBorder>
        <Table.Thead>
          <Table.Tr><Table.Th>Check</Table.Th><Table.Th>Result</Table.Th><Table.Th>Value</Table.Th><Table.Th>Fix</Table.Th></Table.Tr>
        </Table.Thead>
        <Table.Tbody>
          {report.results.map((r) => (
            <Table.Tr key={r.check}>
              <Table.Td>{r.check}</Table.Td>
              <Table.Td><StateBadge state={r.status} /></Table.Td>
              <Table.Td>{r.message}</Table.Td>
              <Table.Td>{r.remediation ?? '-'}</Table.Td>
            </Table.Tr>
          ))}
        </Table.Tbody>
      </Table>
    </>
  );
}
