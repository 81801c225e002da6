import { mkdir, writeFile, chmod } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Command } from 'commander';
import { RefugeError } from '../../core/errors.js';
import { configPath, globals } from '../context.js';
import { printFields, printJson, printTable, say } from '../output.js';

/** The password from standard input (--password-stdin) or REFUGE_PASSWORD; never from an argument (ps shows those). */
export async function readPassword(fromStdin: boolean | undefined): Promise<string> {
  let password = process.env.REFUGE_PASSWORD;
  if (fromStdin) {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    password = Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
  }
  if (!password) throw new RefugeError('invalid_argument', 'no password given', { hint: 'pipe it with --password-stdin or set REFUGE_PASSWORD' });
  return password;
}

/** `refuge login`, `refuge user ...`, `refuge token ...`, `refuge audit`. */
export function registerAccessCommands(program: Command): void {
  program.command('login')
    .description('log in with a user name and password; keeps the session token for later commands')
    .requiredOption('--user <name>', 'user name')
    .option('--password-stdin', 'read the password from standard input (else REFUGE_PASSWORD)')
    .action(async (o: { user: string; passwordStdin?: boolean }, cmd: Command) => {
      const { client, url, json } = globals(cmd);
      const password = await readPassword(o.passwordStdin);
      const r = await client.request<{ token: string; role: string; expiresAt: string }>('POST', '/auth/login', { user: o.user, password });
      const path = configPath();
      await mkdir(dirname(path), { recursive: true, mode: 0o700 });
      await writeFile(path, JSON.stringify({ url, ...(client.connection.ca ? { ca: client.connection.ca } : {}), user: o.user, token: r.token }, null, 2), { mode: 0o600 });
      await chmod(path, 0o600);
      if (json) return printJson({ user: o.user, role: r.role, expiresAt: r.expiresAt, config: path });
      say(`logged in to ${url} as ${o.user} (${r.role}) until ${r.expiresAt}; session kept in ${path}`);
    });
  program.command('whoami').description('show who the current token belongs to').action(async (_o, cmd: Command) => {
    const { client, json } = globals(cmd);
    const me = await client.get<Record<string, unknown>>('/auth/whoami');
    if (json) printJson(me);
    else printFields(me);
  });

  const user = program.command('user').description('users and their roles (owner only)');
  user.command('create <name>')
    .requiredOption('--role <role>', 'owner, contributor, operator or reader')
    .option('--password-stdin', 'read the password from standard input (else REFUGE_PASSWORD)')
    .description('create a user')
    .action(async (name: string, o: { role: string; passwordStdin?: boolean }, cmd: Command) => {
      const { client, json } = globals(cmd);
      const password = await readPassword(o.passwordStdin);
      const r = await client.request<Record<string, unknown>>('POST', '/users', { name, password, role: o.role });
      if (json) printJson(r);
      else printFields(r);
    });
  user.command('list').description('list users').action(async (_o, cmd: Command) => {
    const { client, json } = globals(cmd);
    const r = await client.get<{ items: Record<string, unknown>[] }>('/users');
    if (json) printJson(r);
    else printTable(r.items, ['name', 'role', 'disabled', 'createdAt']);
  });
  user.command('set-role <name> <role>').description("change a user's role").action(async (name: string, role: string, _o, cmd: Command) => {
    const { client, json } = globals(cmd);
    const r = await client.request<Record<string, unknown>>('PATCH', `/users/${encodeURIComponent(name)}`, { role });
    if (json) printJson(r);
    else printFields(r);
  });

  const token = program.command('token').description('API tokens (owner only)');
  token.command('create <name>')
    .option('--role <role>', 'role of a user token (at most the user\'s)')
    .option('--user <name>', 'the user the token acts as (default: you)')
    .option('--expires-in-days <n>', 'expiry')
    .option('--write <file>', 'also write a credentials file (URL, CA, token) for a script')
    .description('create a token; the secret is shown once')
    .action(async (name: string, o: { role?: string; user?: string; expiresInDays?: string; write?: string }, cmd: Command) => {
      const { client, url, json } = globals(cmd);
      const body = {
        name,
        ...(o.role ? { role: o.role } : {}),
        ...(o.user ? { user: o.user } : {}),
        ...(o.expiresInDays ? { expiresInDays: Number(o.expiresInDays) } : {}),
      };
      const r = await client.request<{ token: string; info: Record<string, unknown> }>('POST', '/tokens', body);
      if (o.write) {
        await writeFile(o.write, JSON.stringify({ url, ...(client.connection.ca ? { ca: client.connection.ca } : {}), token: r.token }, null, 2), { mode: 0o600 });
      }
      if (json) return printJson(r);
      say(`token ${String(r.info.id)} (${String(r.info.kind)}, ${String(r.info.role)}): ${r.token}`);
      say('keep it safe: it is not shown again');
    });
  token.command('list').description('list tokens (not their secrets)').action(async (_o, cmd: Command) => {
    const { client, json } = globals(cmd);
    const r = await client.get<{ items: Record<string, unknown>[] }>('/tokens');
    if (json) printJson(r);
    else printTable(r.items, ['id', 'name', 'kind', 'role', 'user', 'expiresAt', 'lastUsedAt']);
  });
  token.command('revoke <id>').description('revoke a token').action(async (id: string, _o, cmd: Command) => {
    const { client, json } = globals(cmd);
    await client.request('DELETE', `/tokens/${id}`);
    if (json) printJson({ revoked: id });
    else say(`token ${id} revoked`);
  });

  program.command('audit').description('the audit log: every change and every failover, newest first (owner only)')
    .option('--limit <n>', 'how many', '50')
    .action(async (o: { limit: string }, cmd: Command) => {
      const { client, json } = globals(cmd);
      const r = await client.get<{ items: Record<string, unknown>[] }>(`/audit?limit=${Number(o.limit)}`);
      if (json) return printJson(r);
      printTable(r.items, ['at', 'principal', 'action', 'target', 'status']);
    });
}
