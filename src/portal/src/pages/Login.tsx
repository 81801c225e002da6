import { Button, Center, Paper, PasswordInput, Stack, TextInput, Title } from '@mantine/core';
import { useState, type FormEvent } from 'react';
import { api, session } from '../api.js';
import { ErrorAlert } from '../components.js';

/** Logs in with a user name and password; the session token lives in this tab only. */
export function Login({ onLogin }: { onLogin: (user: string) => void }) {
  const [user, setUser] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    try {
      const r = await api<{ token: string; user: string }>('POST', '/auth/login', { user, password });
      session.save(r.token, r.user);
      onLogin(r.user);
    } catch (err) {
      setError(err as Error);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Center h="100vh">
      <Paper withBorder p="xl" w={380} component="form" onSubmit={(e: FormEvent) => void submit(e)}>
        <Stack>
          <Title order={2}>Refuge</Title>
          <ErrorAlert error={error} />
          <TextInput label="User" name="user" value={user} onChange={(e) => setUser(e.currentTarget.value)} required autoFocus autoComplete="username" />
          <PasswordInput label="Password" name="password" value={password} onChange={(e) => setPassword(e.currentTarget.value)} required autoComplete="current-password" />
          <Button type="submit" loading={busy}>Log in</Button>
        </Stack>
      </Paper>
    </Center>
  );
}
