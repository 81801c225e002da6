import { ActionIcon, Button, Card, Group, MultiSelect, NumberInput, Select, Stack, Text, TextInput, Textarea, Title } from '@mantine/core';
import { useEffect, useState } from 'react';
import { useNavigate, useParams } from 'react-router';
import { api, get, inVault, type List } from '../api.js';
import { ErrorAlert, PageTitle } from '../components.js';
import { usePoll } from '../hooks.js';
import type { Plan, PlanAction, PlanGroup, Replication } from '../types.js';
import { useVault } from '../vault-context.js';

const MAX_GROUPS = 7; // as the API (and ASR) allow
const newGroup = (n: number): PlanGroup => ({ name: `group-${n}`, replications: [], pre: [], post: [] });

/** Creates or edits a recovery plan: ordered groups of replications, each with pre and post actions. */
export function PlanEditor() {
  const vault = useVault();
  const existing = useParams().name;
  const navigate = useNavigate();
  const [name, setName] = useState('');
  const [description, setDescription] = useState('');
  const [groups, setGroups] = useState<PlanGroup[]>([newGroup(1)]);
  const [error, setError] = useState<Error | null>(null);
  const { data: reps } = usePoll(() => get<List<Replication>>(inVault(vault, '/replications?limit=500')), 0, [vault]);
  useEffect(() => {
    if (!existing) return;
    get<Plan>(inVault(vault, `/recovery-plans/${existing}`)).then((p) => {
      setName(p.name);
      setDescription(p.description);
      setGroups(p.groups);
    }, (err: Error) => setError(err));
  }, [vault, existing]);

  const setGroup = (i: number, g: Partial<PlanGroup>) => setGroups((gs) => gs.map((x, j) => (j === i ? { ...x, ...g } : x)));
  const save = async () => {
    setError(null);
    try {
      if (existing) await api('PATCH', inVault(vault, `/recovery-plans/${existing}`), { description, groups });
      else await api('POST', inVault(vault, '/recovery-plans'), { name, description, groups });
      void navigate('/plans');
    } catch (err) {
      setError(err as Error);
    }
  };
  const remove = async () => {
    try {
      await api('DELETE', inVault(vault, `/recovery-plans/${existing ?? ''}`));
      void navigate('/plans');
    } catch (err) {
      setError(err as Error);
    }
  };
  const used = new Set(groups.flatMap((g) => g.replications));
  return (
    <>
      <PageTitle actions={existing ? <Button color="red" variant="light" onClick={() => void remove()}>Delete plan</Button> : null}>{existing ? `Plan ${existing}` : 'New recovery plan'}</PageTitle>
      <ErrorAlert error={error} />
      <Stack>
        <Group align="start">
          <TextInput label="Name" value={name} onChange={(e) => setName(e.currentTarget.value)} disabled={existing !== undefined} required />
          <Textarea label="Description" value={description} onChange={(e) => setDescription(e.currentTarget.value)} autosize w={420} />
        </Group>
        {groups.map((g, i) => (
          <Card withBorder key={i} aria-label={`group ${i + 1}`}>
            <Group justify="space-between" mb="xs">
              <Title order={5}>Group {i + 1} (starts after group {i || '-'})</Title>
              <ActionIcon variant="subtle" color="red" aria-label={`remove group ${i + 1}`} onClick={() => setGroups((gs) => gs.filter((_, j) => j !== i))} disabled={groups.length === 1}>✕</ActionIcon>
            </Group>
            <Group align="start">
              <TextInput label="Group name" value={g.name} onChange={(e) => setGroup(i, { name: e.currentTarget.value })} />
              <MultiSelect label="Machines (replications)" w={420} searchable value={g.replications} onChange={(v) => setGroup(i, { replications: v })}
                data={(reps?.items ?? []).filter((r) => !used.has(r.name) || g.replications.includes(r.name)).map((r) => r.name)} />
            </Group>
            {(['pre', 'post'] as const).map((when) => (
              <Actions key={when} title={when === 'pre' ? 'Before the group starts' : 'After the group runs'} actions={g[when]} onChange={(a) => setGroup(i, { [when]: a })} />
            ))}
          </Card>
        ))}
        <Group>
          <Button variant="default" onClick={() => setGroups((gs) => [...gs, newGroup(gs.length + 1)])} disabled={groups.length >= MAX_GROUPS}>Add group</Button>
          <Button onClick={() => void save()} disabled={!name}>Save plan</Button>
        </Group>
      </Stack>
    </>
  );
}

function Actions({ title, actions, onChange }: { title: string; actions: PlanAction[]; onChange: (a: PlanAction[]) => void }) {
  const set = (i: number, a: Partial<PlanAction>) => onChange(actions.map((x, j) => (j === i ? { ...x, ...a } : x)));
  return (
    <Stack gap={4} mt="sm">
      <Text size="sm" fw={600}>{title}</Text>
      {actions.map((a, i) => (
        <Group key={i} align="end">
          <TextInput label="Action" value={a.name} onChange={(e) => set(i, { name: e.currentTarget.value })} w={160} />
          <Select label="Kind" data={['manual', 'script', 'webhook']} value={a.kind} onChange={(v) => set(i, { kind: (v ?? 'manual') })} w={120} allowDeselect={false} />
          <TextInput label={a.kind === 'manual' ? 'Instruction' : a.kind === 'script' ? 'Script path' : 'URL'} value={a.target} onChange={(e) => set(i, { target: e.currentTarget.value })} w={300} />
          <NumberInput label="Timeout (s)" value={a.timeoutSeconds ?? ''} min={1} max={86400} onChange={(v) => set(i, { timeoutSeconds: typeof v === 'number' ? v : undefined })} w={110} />
          <ActionIcon variant="subtle" color="red" aria-label={`remove action ${a.name}`} onClick={() => onChange(actions.filter((_, j) => j !== i))} mb={4}>✕</ActionIcon>
        </Group>
      ))}
      <Button size="xs" variant="subtle" w="fit-content" onClick={() => onChange([...actions, { name: `step-${actions.length + 1}`, kind: 'manual', target: '' }])}>Add action</Button>
    </Stack>
  );
}
