import { Button, Group, Select, Stepper, Text, TextInput } from '@mantine/core';
import { useState } from 'react';
import { useNavigate } from 'react-router';
import { api, get, inVault, type List } from '../api.js';
import { ErrorAlert, PageTitle, ReadinessTable } from '../components.js';
import { bytes } from '../format.js';
import { usePoll } from '../hooks.js';
import type { Machine, Policy, ReadinessReport, Replication, Site } from '../types.js';
import { useVault } from '../vault-context.js';

/** Enable replication: choose, see the readiness report, then enable (a failed check needs an owner's reason). */
export function EnableWizard() {
  const vault = useVault();
  const navigate = useNavigate();
  const [step, setStep] = useState(0);
  const [machine, setMachine] = useState<string | null>(null);
  const [target, setTarget] = useState<string | null>(null);
  const [policy, setPolicy] = useState<string | null>(null);
  const [report, setReport] = useState<ReadinessReport | null>(null);
  const [reason, setReason] = useState('');
  const [error, setError] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);
  const { data } = usePoll(async () => {
    const [machines, sites, policies, reps] = await Promise.all([
      get<List<Machine>>(inVault(vault, '/machines')),
      get<List<Site>>(inVault(vault, '/sites')),
      get<List<Policy>>(inVault(vault, '/policies')),
      get<List<Replication>>(inVault(vault, '/replications')),
    ]);
    const protectedNames = new Set(reps.items.map((r) => r.machine));
    return { machines: machines.items.filter((m) => !protectedNames.has(m.name)), sites: sites.items, policies: policies.items };
  }, 0, [vault]);
  const chosen = data?.machines.find((m) => m.name === machine);

  const check = async () => {
    setBusy(true);
    setError(null);
    try {
      setReport(await api<ReadinessReport>('POST', inVault(vault, '/readiness'), { machine, targetSite: target, ...(policy ? { policy } : {}) }));
      setStep(1);
    } catch (err) {
      setError(err as Error);
    } finally {
      setBusy(false);
    }
  };
  const enable = async () => {
    setBusy(true);
    setError(null);
    try {
      const r = await api<Replication>('POST', inVault(vault, '/replications'), {
        machine, targetSite: target, policy, ...(report?.worst === 'fail' ? { override: { reason } } : {}),
      });
      void navigate(`/replications/${r.name}`);
    } catch (err) {
      setError(err as Error);
      setBusy(false);
    }
  };

  return (
    <>
      <PageTitle>Enable replication</PageTitle>
      <ErrorAlert error={error} />
      <Stepper active={step} onStepClick={(s) => s < step && setStep(s)} allowNextStepsSelect={false}>
        <Stepper.Step label="Machine and target" description="what to protect, where">
          <Group align="end" mt="md">
            <Select label="Machine" placeholder={data?.machines.length === 0 ? 'no unprotected machine' : 'choose'} data={data?.machines.map((m) => m.name) ?? []} value={machine} onChange={(v) => {
              setMachine(v);
              setTarget(null);
            }} searchable />
            <Select label="Target site" data={data?.sites.filter((s) => s.name !== chosen?.site).map((s) => s.name) ?? []} value={target} onChange={setTarget} disabled={!machine} />
            <Select label="Policy" data={data?.policies.map((p) => p.name) ?? []} value={policy} onChange={setPolicy} />
            <Button onClick={() => void check()} disabled={!machine || !target || !policy} loading={busy}>Check readiness</Button>
          </Group>
          {chosen ? <Text size="sm" mt="sm" c="dimmed">{chosen.name} at {chosen.site}: {chosen.cpus} vCPU, {chosen.memoryMiB} MiB, disks {chosen.disks.map((d) => `${d.name} ${bytes(d.sizeBytes)}`).join(', ')}</Text> : null}
        </Stepper.Step>
        <Stepper.Step label="Readiness" description="checks before enabling">
          {report ? <ReadinessTable report={report} /> : null}
          {report?.worst === 'fail' ? (
            <TextInput mt="md" label="A check failed: an owner may go ahead with a reason (recorded in the audit log)" value={reason} onChange={(e) => setReason(e.currentTarget.value)} />
          ) : null}
          <Group mt="md">
            <Button variant="default" onClick={() => setStep(0)}>Back</Button>
            <Button onClick={() => void enable()} loading={busy} disabled={report?.worst === 'fail' && reason.trim().length < 3}>Enable replication</Button>
          </Group>
        </Stepper.Step>
      </Stepper>
    </>
  );
}
