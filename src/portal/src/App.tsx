import { AppShell, Burger, Group, NavLink, Select, Text, Button, Center, Loader, Title } from '@mantine/core';
import { useDisclosure } from '@mantine/hooks';
import { useEffect, useState } from 'react';
import { Link, Navigate, Route, Routes, useLocation } from 'react-router';
import { get, session, setUnauthenticatedHandler, type List } from './api.js';
import type { Vault } from './types.js';
import { VaultContext } from './vault-context.js';
import { Login } from './pages/Login.js';
import { Dashboard } from './pages/Dashboard.js';
import { Sites } from './pages/Sites.js';
import { Replications } from './pages/Replications.js';
import { ReplicationDetail } from './pages/ReplicationDetail.js';
import { EnableWizard } from './pages/EnableWizard.js';
import { FailoverWizard } from './pages/FailoverWizard.js';
import { Plans } from './pages/Plans.js';
import { PlanEditor } from './pages/PlanEditor.js';
import { Jobs } from './pages/Jobs.js';
import { JobDetail } from './pages/JobDetail.js';
import { Drills } from './pages/Drills.js';
import { Readiness } from './pages/Readiness.js';

const NAV = [
  ['/', 'Dashboard'],
  ['/replications', 'Replications'],
  ['/sites', 'Sites'],
  ['/plans', 'Recovery plans'],
  ['/jobs', 'Jobs'],
  ['/drills', 'Drills'],
  ['/readiness', 'Readiness'],
] as const;

export function App() {
  const [user, setUser] = useState(session.user());
  useEffect(() => setUnauthenticatedHandler(() => {
    session.clear();
    setUser(null);
  }), []);
  if (!user) return <Login onLogin={(u) => setUser(u)} />;
  return <Shell user={user} onLogout={() => {
    session.clear();
    setUser(null);
  }} />;
}

function Shell({ user, onLogout }: { user: string; onLogout: () => void }) {
  const [opened, { toggle }] = useDisclosure();
  const [vaults, setVaults] = useState<string[] | undefined>();
  const [vault, setVault] = useState<string | null>(null);
  const location = useLocation();
  useEffect(() => {
    void get<List<Vault>>('/vaults').then((r) => {
      const names = r.items.map((v) => v.name);
      setVaults(names);
      setVault((v) => v ?? names[0] ?? null);
    }).catch(() => setVaults([]));
  }, []);

  const active = (path: string) => (path === '/' ? location.pathname === '/' : location.pathname.startsWith(path));
  return (
    <AppShell header={{ height: 56 }} navbar={{ width: 210, breakpoint: 'sm', collapsed: { mobile: !opened } }} padding="md">
      <AppShell.Header>
        <Group h="100%" px="md" justify="space-between">
          <Group>
            <Burger opened={opened} onClick={toggle} hiddenFrom="sm" size="sm" aria-label="menu" />
            <Title order={3}>Refuge</Title>
            {vaults && vaults.length > 1 ? (
              <Select aria-label="vault" data={vaults} value={vault} onChange={setVault} allowDeselect={false} w={180} />
            ) : <Text c="dimmed">vault {vault ?? '-'}</Text>}
          </Group>
          <Group>
            <Text size="sm">{user}</Text>
            <Button variant="subtle" size="xs" onClick={onLogout}>Log out</Button>
          </Group>
        </Group>
      </AppShell.Header>
      <AppShell.Navbar p="xs" component="nav" aria-label="sections">
        {NAV.map(([path, label]) => <NavLink key={path} component={Link} to={path} label={label} active={active(path)} />)}
      </AppShell.Navbar>
      <AppShell.Main>
        {vaults === undefined ? <Center><Loader /></Center> : vault === null ? (
          <Text>There is no vault yet: create one with <code>refuge vault create NAME</code>.</Text>
        ) : (
          <VaultContext.Provider value={vault}>
            <Routes>
              <Route path="/" element={<Dashboard />} />
              <Route path="/replications" element={<Replications />} />
              <Route path="/replications/enable" element={<EnableWizard />} />
              <Route path="/replications/:name" element={<ReplicationDetail />} />
              <Route path="/replications/:name/recover" element={<FailoverWizard />} />
              <Route path="/sites" element={<Sites />} />
              <Route path="/plans" element={<Plans />} />
              <Route path="/plans/new" element={<PlanEditor />} />
              <Route path="/plans/:name" element={<PlanEditor />} />
              <Route path="/jobs" element={<Jobs />} />
              <Route path="/jobs/:id" element={<JobDetail />} />
              <Route path="/drills" element={<Drills />} />
              <Route path="/readiness" element={<Readiness />} />
              <Route path="*" element={<Navigate to="/" replace />} />
            </Routes>
          </VaultContext.Provider>
        )}
      </AppShell.Main>
    </AppShell>
  );
}
