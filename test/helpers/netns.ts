import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ip = async (...args: string[]) => void (await run('ip', args));

/**
 * Two sites on one machine as network namespaces (../shared/docs/test-lab.md), with one link between them:
 *
 *   root (the test) --mgmt veth-- recovery --site link (veth)-- primary
 *
 * Each site has a service address on its loopback (the vault at recovery, a replicator at primary), routed over the
 * site link, so cutting the link (`cut`, the primary side set down) cuts the sites apart while both keep their
 * addresses. The test reaches only the recovery site (its operator's view); the recovery namespace does not
 * forward, so nothing from the root namespace reaches the primary. Names carry the `orch` prefix and a random id.
 */
export interface TwoSites {
  primary: string;
  recovery: string;
  /** Service addresses: the vault listens at `recoveryService`, the primary's replicator at `primaryService`. */
  primaryService: string;
  recoveryService: string;
  cut(): Promise<void>;
  reconnect(): Promise<void>;
  /** Starts `command args` inside a site's namespace, output appended to `logFile`. */
  spawnIn(ns: string, command: string, args: string[], logFile: string, env?: Record<string, string>): ChildProcess & { output: () => string };
  close(): Promise<void>;
}

export async function createTwoSites(): Promise<TwoSites> {
  const id = randomBytes(2).toString('hex');
  const octet = 16 + (randomBytes(1)[0] as number) % 224;
  const primary = `orch-p-${id}`;
  const recovery = `orch-r-${id}`;
  const [vethP, vethR, mgmtRoot, mgmtR] = [`orp${id}`, `orr${id}`, `orm${id}`, `orn${id}`];
  const link = { p: `10.201.${octet}.1`, r: `10.201.${octet}.2` };
  const mgmt = { root: `10.204.${octet}.1`, r: `10.204.${octet}.2` };
  const primaryService = `10.203.${octet}.1`;
  const recoveryService = `10.202.${octet}.2`;
  const inNs = (ns: string, ...args: string[]) => ip('netns', 'exec', ns, 'ip', ...args);
  const children: ChildProcess[] = [];

  const close = async () => {
    for (const c of children) {
      if (c.exitCode === null && c.signalCode === null) {
        const exited = new Promise<void>((r) => c.once('exit', () => r()));
        c.kill('SIGKILL');
        await exited;
      }
    }
    await ip('route', 'del', `${recoveryService}/32`).catch(() => undefined);
    // Deleting a namespace deletes its end of each veth, and with it the peer.
    await ip('netns', 'del', primary).catch(() => undefined);
    await ip('netns', 'del', recovery).catch(() => undefined);
    await ip('link', 'del', mgmtRoot).catch(() => undefined);
  };

  try {
    await ip('netns', 'add', primary);
    await ip('netns', 'add', recovery);
    for (const ns of [primary, recovery]) await inNs(ns, 'link', 'set', 'lo', 'up');
    await ip('link', 'add', vethP, 'type', 'veth', 'peer', 'name', vethR);
    await ip('link', 'set', vethP, 'netns', primary);
    await ip('link', 'set', vethR, 'netns', recovery);
    await inNs(primary, 'addr', 'add', `${link.p}/24`, 'dev', vethP);
    await inNs(recovery, 'addr', 'add', `${link.r}/24`, 'dev', vethR);
    await inNs(primary, 'addr', 'add', `${primaryService}/32`, 'dev', 'lo');
    await inNs(recovery, 'addr', 'add', `${recoveryService}/32`, 'dev', 'lo');
    await inNs(primary, 'link', 'set', vethP, 'up');
    await inNs(recovery, 'link', 'set', vethR, 'up');
    await ip('link', 'add', mgmtRoot, 'type', 'veth', 'peer', 'name', mgmtR);
    await ip('link', 'set', mgmtR, 'netns', recovery);
    await ip('addr', 'add', `${mgmt.root}/24`, 'dev', mgmtRoot);
    await inNs(recovery, 'addr', 'add', `${mgmt.r}/24`, 'dev', mgmtR);
    await ip('link', 'set', mgmtRoot, 'up');
    await inNs(recovery, 'link', 'set', mgmtR, 'up');
    await ip('route', 'replace', `${recoveryService}/32`, 'via', mgmt.r);
  } catch (err) {
    await close();
    throw err;
  }
  const routes = async () => {
    await inNs(primary, 'route', 'replace', `${recoveryService}/32`, 'via', link.r);
    await inNs(recovery, 'route', 'replace', `${primaryService}/32`, 'via', link.p);
  };
  await routes().catch(async (err: unknown) => {
    await close();
    throw err;
  });

  return {
    primary,
    recovery,
    primaryService,
    recoveryService,
    cut: () => inNs(primary, 'link', 'set', vethP, 'down'),
    async reconnect() {
      await inNs(primary, 'link', 'set', vethP, 'up');
      await routes(); // routes through a link that went down are gone
    },
    spawnIn(ns, command, args, logFile, env = {}) {
      const child = spawn('ip', ['netns', 'exec', ns, command, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
      const log = createWriteStream(logFile, { flags: 'a' });
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        log.write(d);
      });
      child.stderr.pipe(log);
      children.push(child);
      return Object.assign(child, { output: () => out });
    },
    close,
  };
}
