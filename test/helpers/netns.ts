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
  /**
   * Makes the site link slow and lossy, both ways: a token bucket (tc tbf) at `rateKbit` on each end's egress, and
   * `lossPercent` of the packets arriving at each end dropped at random (iptables statistic match). Not `tc netem`:
   * the kernels this runs on may lack it (CONFIG_NET_SCH_NETEM), while tbf and the statistic match are standard.
   */
  degrade(o: { rateKbit: number; lossPercent: number }): Promise<void>;
  /** Undoes `degrade`; returns the packets that arrived over the link meanwhile and how many of them were dropped. */
  restore(): Promise<{ packets: number; dropped: number }>;
  /** Starts `command args` inside a site's namespace, output appended to `logFile`. */
  spawnIn(ns: string, command: string, args: string[], logFile: string, env?: Record<string, string>): ChildProcess & { output: () => string };
  close(): Promise<void>;
}

export async function createTwoSites(): Promise<TwoSites> {
  const id = randomBytes(2).toString('hex');
  // Test files run two at a time (vitest.config.ts, maxWorkers): each worker (VITEST_POOL_ID 1..maxWorkers) draws
  // from its own residue class, so two files at once never pick the same addresses and routes in the root namespace.
  const workers = 2; // vitest.config.ts's maxWorkers
  const pool = Number(process.env.VITEST_POOL_ID ?? 0) % workers;
  const octet = 16 + ((randomBytes(1)[0] as number) % (224 / workers)) * workers + pool;
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

  const ends: [string, string][] = [[primary, vethP], [recovery, vethR]];
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
    async degrade({ rateKbit, lossPercent }) {
      if (!(rateKbit > 0) || !(lossPercent >= 0 && lossPercent < 100)) throw new Error(`bad link degradation: ${rateKbit} kbit/s, ${lossPercent}% loss`);
      for (const [ns, dev] of ends) {
        // A burst of a few packets and at most 100 ms of queue: a slow WAN link, not a deep buffer.
        await run('ip', ['netns', 'exec', ns, 'tc', 'qdisc', 'replace', 'dev', dev, 'root', 'tbf', 'rate', `${rateKbit}kbit`, 'burst', '16kb', 'latency', '100ms']);
        // The first rule only counts what arrives; the second drops a random share of it.
        await run('ip', ['netns', 'exec', ns, 'iptables', '-A', 'INPUT', '-i', dev]);
        await run('ip', ['netns', 'exec', ns, 'iptables', '-A', 'INPUT', '-i', dev, '-m', 'statistic', '--mode', 'random', '--probability', String(lossPercent / 100), '-j', 'DROP']);
      }
    },
    async restore() {
      let packets = 0;
      let dropped = 0;
      for (const [ns, dev] of ends) {
        const { stdout } = await run('ip', ['netns', 'exec', ns, 'iptables', '-v', '-S', 'INPUT']);
        for (const line of stdout.split('\n').filter((l) => l.startsWith('-A INPUT') && l.includes(`-i ${dev} `))) {
          const n = Number(/-c (\d+) \d+/.exec(line)?.[1] ?? 0);
          if (line.includes('-j DROP')) dropped += n;
          else packets += n;
        }
        await run('ip', ['netns', 'exec', ns, 'iptables', '-F', 'INPUT']);
        await run('ip', ['netns', 'exec', ns, 'tc', 'qdisc', 'del', 'dev', dev, 'root']).catch(() => undefined);
      }
      return { packets, dropped };
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
