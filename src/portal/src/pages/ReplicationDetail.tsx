import { Anchor, Button, Card, Group, Modal, Progress, SimpleGrid, Stack, Table, Text, Timeline, Title } from '@mantine/core';
import { useState } from 'react';
import { Link, useNavigate, useParams } from 'react-router';
import { api, get, inVault, type List } from '../api.js';
import { ErrorAlert, PageTitle, StateBadge } from '../components.js';
import { bytes, seconds, time } from '../format.js';
import { usePoll } from '../hooks.js';
import { churn, diskChurn } from '../rpo.js';
import type { Job, Machine, Point, Replication } from '../types.js';
import { useVault } from '../vault-context.js';

const LABELS: Record<string, string> = {
  'test-failover': 'Test failover',
  'test-failover-cleanup': 'Clean up test failover',
  failover: 'Failover',
  commit: 'Commit failover',
  disable: 'Disable replication',
};
/** Operations that need a point and a preview go through the wizard; the others are confirmed in a dialog. */
const WIZARD = new Set(['test-failover', 'failover']);

/** What reached the target: the agent reads ahead of its uploads, so what it read less what is still pending. */
const shippedBytes = (p: NonNullable<Replication['progress']>) => Math.max(0, p.doneBytes - (p.pendingBytes ?? 0));

export function ReplicationDetail() {
  const vault = useVault();
  const name = useParams().name ?? '';
  const navigate = useNavigate();
  const [confirm, setConfirm] = useState<string | null>(null);
  const [opError, setOpError] = useState<Error | null>(null);
  const { data, error } = usePoll(async () => {
    const rep = await get<Replication>(inVault(vault, `/replications/${name}`));
    const [points, machine] = await Promise.all([
      get<List<Point>>(inVault(vault, `/replications/${name}/points?limit=50`)),
      get<Machine>(inVault(vault, `/machines/${rep.machine}`)),
    ]);
    const latest = points.items[0] ? await get<{ disks: { name: string; sizeBytes: number; storedChunks: number; chunkSize: number }[] }>(inVault(vault, `/replications/${name}/points/${points.items[0].id}`)) : undefined;
    return { rep, points: points.items, machine, latestDisks: latest?.disks ?? [] };
  }, 1500, [vault, name]);

  const run = async (op: string) => {
    setConfirm(null);
    try {
      const job = await api<Job>('POST', inVault(vault, `/replications/${name}/${op}`), op === 'failover' || op === 'test-failover' ? {} : undefined);
      void navigate(`/jobs/${job.id}`);
    } catch (err) {
      setOpError(err as Error);
    }
  };

  const r = data?.rep;
  const p = r?.progress;
  const rate = data ? churn(data.points) : null;
  const perDisk = data ? diskChurn(data.points) : [];
  return (
    <>
      <PageTitle actions={r?.allowedOperations.map((op) => (
        <Button key={op} color={op === 'failover' || op === 'disable' ? 'red' : undefined} variant={op === 'test-failover' ? 'filled' : 'light'}
          onClick={() => (WIZARD.has(op) ? void navigate(`/replications/${name}/recover?op=${op}`) : setConfirm(op))}>
          {LABELS[op] ?? op}
        </Button>
      ))}>Replication {name}</PageTitle>
      <ErrorAlert error={error ?? opError} />
      {r ? (
        <>
          <SimpleGrid cols={{ base: 2, md: 4 }} mb="md">
            <Card withBorder><Text size="sm" c="dimmed">State</Text><Group gap={4}><StateBadge state={r.state} />{r.testFailoverState !== 'none' ? <StateBadge state={`test ${r.testFailoverState}`} /> : null}</Group></Card>
            <Card withBorder><Text size="sm" c="dimmed">Health</Text><StateBadge state={r.health} />{r.healthErrors.map((e) => <Text size="xs" key={e.message}>{e.message}</Text>)}</Card>
            <Card withBorder><Text size="sm" c="dimmed">RPO</Text><Text fw={700}>{seconds(r.rpo?.seconds)}</Text></Card>
            <Card withBorder><Text size="sm" c="dimmed">Sites</Text><Text>{r.sourceSite} → {r.targetSite}</Text><Text size="xs">policy {r.policy}</Text></Card>
          </SimpleGrid>
          {r.activeJobId ? <Text mb="sm">Running: <Anchor component={Link} to={`/jobs/${r.activeJobId}`}>job {r.activeJobId}</Anchor></Text> : null}
          {p && (r.state === 'seeding' || p.phase !== 'idle') ? (
            <Card withBorder mb="md" aria-label="replication progress">
              <Text size="sm">{r.state === 'seeding' ? 'Seeding' : p.phase}: {p.totalBytes > 0 ? `${bytes(shippedBytes(p))} of ${bytes(p.totalBytes)} shipped (${bytes(p.doneBytes)} read, ${bytes(p.pendingBytes ?? 0)} pending)` : 'waiting for the agent'}</Text>
              <Progress value={p.totalBytes > 0 ? (shippedBytes(p) / p.totalBytes) * 100 : 0} aria-label="seeding progress" size="lg" />
            </Card>
          ) : null}

          <SimpleGrid cols={{ base: 1, lg: 2 }}>
            <Stack gap="xs">
              <Title order={4}>Disks</Title>
              <Text size="sm">Churn {rate === null ? '-' : `${bytes(rate)}/s`} (recent points{perDisk.length > 0 ? `; ${perDisk.map((d) => `${d.name} ${bytes(d.bytesPerSecond)}/s`).join(', ')}` : ''}), pending {bytes(p?.pendingBytes ?? 0)} not yet in a point</Text>
              <Table withTableBorder>
                <Table.Thead><Table.Tr><Table.Th>Disk</Table.Th><Table.Th>Size</Table.Th><Table.Th>Stored at target</Table.Th></Table.Tr></Table.Thead>
                <Table.Tbody>
                  {data.machine.disks.map((d) => {
                    const stored = data.latestDisks.find((x) => x.name === d.name);
                    return (
                      <Table.Tr key={d.name}>
                        <Table.Td>{d.name}</Table.Td>
                        <Table.Td>{bytes(d.sizeBytes)}</Table.Td>
                        <Table.Td>{stored ? bytes(stored.storedChunks * stored.chunkSize) : '-'}</Table.Td>
                      </Table.Tr>
                    );
                  })}
                </Table.Tbody>
              </Table>
              <Text size="sm" c="dimmed">Machine {data.machine.name}: {data.machine.cpus} vCPU, {data.machine.memoryMiB} MiB, {data.machine.os}; agent heartbeat {time(data.machine.agent.lastHeartbeatAt)}</Text>
            </Stack>
            <Stack gap="xs">
              <Title order={4}>Recovery points</Title>
              {data.points.length === 0 ? <Text c="dimmed">No point yet.</Text> : (
                <Timeline active={0} bulletSize={14} lineWidth={2} aria-label="recovery points">
                  {data.points.slice(0, 12).map((pt) => (
                    <Timeline.Item key={pt.id} title={time(pt.capturedAt)}>
                      <Text size="xs" c="dimmed">{pt.consistency}-consistent, {bytes(pt.changedBytes)} changed, {bytes(pt.storedBytes)} stored · {pt.id}</Text>
                    </Timeline.Item>
                  ))}
                </Timeline>
              )}
            </Stack>
          </SimpleGrid>
        </>
      ) : null}
      <Modal opened={confirm !== null} onClose={() => setConfirm(null)} title={confirm ? LABELS[confirm] : ''}>
        <Text mb="md">{confirm ? `${LABELS[confirm] ?? confirm} of ${name}?` : ''}</Text>
        <Group justify="flex-end">
          <Button variant="default" onClick={() => setConfirm(null)}>Cancel</Button>
          <Button onClick={() => confirm && void run(confirm)} data-autofocus>Confirm</Button>
        </Group>
      </Modal>
    </>
  );
}
