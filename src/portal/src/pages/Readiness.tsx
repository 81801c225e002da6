import { Button, Group, Select, Stack, Text } from '@mantine/core';
import { useState } from 'react';
import { api, get, inVault, type List } from '../api.js';
import { ErrorAlert, PageTitle, ReadinessTable } from '../components.js';
import { usePoll } from '../hooks.js';
import type { ReadinessReport, Replication, Site } from '../types.js';
import { useVault } from '../vault-context.js';

/** The latest readiness report of each subject, with the fix for every warning or failure; checks on demand. */
export function Readiness() {
  const vault = useVault();
  const [subject, setSubject] = useState<string | null>(null);
  const [opError, setOpError] = useState<Error | null>(null);
  const { data, error, reload } = usePoll(async () => {
    const [reports, reps, sites] = await Promise.all([
      get<List<ReadinessReport>>(inVault(vault, '/readiness?limit=200')),
      get<List<Replication>>(inVault(vault, '/replications')),
      get<List<Site>>(inVault(vault, '/sites')),
    ]);
    const latest = new Map<string, ReadinessReport>();
    for (const r of reports.items) if (!latest.has(`${r.scope}:${r.subject}`)) latest.set(`${r.scope}:${r.subject}`, r);
    return { latest: [...latest.values()], subjects: [...reps.items.map((r) => `replication:${r.name}`), ...sites.items.map((s) => `site:${s.name}`)] };
  }, 10000, [vault]);
  const run = async () => {
    if (!subject) return;
    const [scope, name] = subject.split(':') as [string, string];
    try {
      await api('POST', inVault(vault, '/readiness'), { [scope]: name });
      await reload();
    } catch (err) {
      setOpError(err as Error);
    }
  };
  return (
    <>
      <PageTitle actions={<Group><Select aria-label="subject to check" placeholder="replication or site" data={data?.subjects ?? []} value={subject} onChange={setSubject} /><Button onClick={() => void run()} disabled={!subject}>Run checks</Button></Group>}>Readiness</PageTitle>
      <ErrorAlert error={error ?? opError} />
      {data?.latest.length === 0 ? <Text c="dimmed">No report yet: run the checks.</Text> : null}
      <Stack gap="xl">
        {data?.latest.map((r) => <div key={r.id}><ReadinessTable report={r} /></div>)}
      </Stack>
    </>
  );
}
