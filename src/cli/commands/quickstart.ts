import type { Command } from 'commander';
import { RefugeError } from '../../core/errors.js';
import { globals } from '../context.js';
import { printJson } from '../output.js';
import { runQuickstart } from '../quickstart/quickstart.js';

export function registerQuickstartCommand(program: Command): void {
  program
    .command('quickstart')
    .description('protect a tiny VM on this machine and fail it over, printing each step and the measured RPO and RTO')
    .option('--dir <dir>', 'working folder (wiped first)', 'var/quickstart')
    .option('--keep', 'leave the vault and the failed-over VM running at the end')
    .option('--disk-mib <n>', 'size of the demo disk, MiB', '64')
    .option('--data-mib <n>', 'data the guest writes, MiB', '8')
    .option('--crash-interval <seconds>', 'seconds between recovery points', '5')
    .option('--capture <mode>', "cdp: the agent serves the VM's disk over NBD; scan: it scans the image, pausing the VM", 'cdp')
    .action(async (o: { dir: string; keep?: boolean; diskMib: string; dataMib: string; crashInterval: string; capture: string }, cmd: Command) => {
      const { json } = globals(cmd);
      if (o.capture !== 'cdp' && o.capture !== 'scan') throw new RefugeError('invalid_argument', `--capture '${o.capture}' is not a capture mode`, { hint: 'use cdp or scan' });
      const summary = await runQuickstart({
        dir: o.dir,
        keep: o.keep === true,
        quiet: json === true,
        diskMiB: Number(o.diskMib),
        dataMiB: Number(o.dataMib),
        crashIntervalSeconds: Number(o.crashInterval),
        capture: o.capture,
      });
      if (json) printJson(summary);
    });
}
