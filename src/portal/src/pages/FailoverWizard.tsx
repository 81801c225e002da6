import { Button, Card, Group, List as MList, Radio, Stack, Stepper, Text, TextInput } from '@mantine/core';
import { useState } from 'react';
import { useNavigate, useParams, useSearchParams } from 'react-router';
import { api, get, inVault, type List } from '../api.js';
import { ErrorAlert, PageTitle, ReadinessTable } from '../components.js';
import { bytes, seconds, time } from '../format.js';
import { usePoll } from '../hooks.js';
import type { Job, Machine, Point, ReadinessReport, Replication } from '../types.js';
import { useVault } from '../vault-context.js';

/**
 * (Test) failover: choose the recovery point, preview what will happen (a dry run: the readiness checks of the
 * recovery site, the point's age and the machine to start, nothing changed), then start the job.
 */
export function FailoverWizard() {
  const vault = useVault();
  const name = useParams().name ?? '';
  const [params] = useSearchParams();
  const op = params.get('op') === 'failover' ? 'failover' : 'test-failover';
  const navigate = useNavigate();
  const [step, setStep] = useState(0);
  const [point, setPoint] = useState('latest');
  const [preview, setPreview] = useState<ReadinessReport | null>(null);
  const [reason, setReason] = useState('');
  const [error, setError] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);
  const { data } = usePoll(async () => {
    const rep = await get<Replication>(inVault(vault, `/replications/${name}`));
    const [points, machine] = await Promise.all([get<List<Point>>(inVault(vault, `/replications/${name}/points?limit=20`)), get<Machine>(inVault(vault, `/machines/${rep.machine}`))]);
    return { rep, points: points.items, machine };
  }, 0, [vault, name]);
  const chosen = point === 'latest' ? data?.points[0] : data?.points.find((p) => p.id === point);

  const dryRun = async () => {
    setBusy(true);
    setError(null);
    try {
      setPreview(await api<ReadinessReport>('POST', inVault(vault, '/readiness'), { replication: name }));
      setStep(1);
    } catch (err) {
      setError(err as Error);
    } finally {
      setBusy(false);
    }
  };
  const start = async () => {
    setBusy(true);
    try {
      const job = await api<Job>('POST', inVault(vault, `/replications/${name}/${op}`), { point, ...(preview?.worst === 'fail' ? { override: { reason } } : {}) });
      void navigate(`/jobs/${job.id}`);
    } catch (err) {
      setError(err as Error);
      setBusy(false);
    }
  };

  const title = op === 'failover' ? 'Failover' : 'Test failover';
  return (
    <>
      <PageTitle>{title} of {name}</PageTitle>
      <ErrorAlert error={error} />
      <Stepper active={step} onStepClick={(s) => s < step && setStep(s)} allowNextStepsSelect={false}>
        <Stepper.Step label="Recovery point" description="which moment to recover">
          <Radio.Group value={point} onChange={setPoint} name="point" label="Recover from" mt="md">
            <Stack gap={6} mt="xs">
              <Radio value="latest" label={`Latest (${data?.points[0] ? time(data.points[0].capturedAt) : 'none yet'})`} />
              {data?.points.slice(1).map((p) => <Radio key={p.id} value={p.id} label={`${time(p.capturedAt)} · ${p.consistency} · ${bytes(p.changedBytes)} changed`} />)}
            </Stack>
          </Radio.Group>
          <Button mt="md" onClick={() => void dryRun()} loading={busy} disabled={!data?.points.length}>Preview</Button>
        </Stepper.Step>
        <Stepper.Step label="Preview" description="dry run, nothing changes">
          {data && chosen ? (
            <Card withBorder mb="md" aria-label="preview">
              <Text fw={600} mb="xs">What will happen</Text>
              <MList size="sm">
                <MList.Item>Restore {data.machine.disks.length} disk(s) ({data.machine.disks.map((d) => `${d.name} ${bytes(d.sizeBytes)}`).join(', ')}) from point {chosen.id}, captured {time(chosen.capturedAt)} ({seconds((Date.now() - Date.parse(chosen.capturedAt)) / 1000)} ago), every chunk checked against its hash.</MList.Item>
                <MList.Item>Start {op === 'failover' ? data.rep.machine : `${data.rep.machine}-test`} at site {data.rep.targetSite} with {data.machine.cpus} vCPU and {data.machine.memoryMiB} MiB{op === 'test-failover' ? ', isolated; replication continues' : '; replication stops until the failover is committed'}.</MList.Item>
              </MList>
            </Card>
          ) : null}
          {preview ? <ReadinessTable report={preview} /> : null}
          {preview?.worst === 'fail' ? <TextInput mt="md" label="A check failed: an owner may go ahead with a reason" value={reason} onChange={(e) => setReason(e.currentTarget.value)} /> : null}
          <Group mt="md">
            <Button variant="default" onClick={() => setStep(0)}>Back</Button>
            <Button color={op === 'failover' ? 'red' : undefined} onClick={() => void start()} loading={busy} disabled={preview?.worst === 'fail' && reason.trim().length < 3}>Start {title.toLowerCase()}</Button>
          </Group>
        </Stepper.Step>
      </Stepper>
    </>
  );
}
