import { RefugeError } from '../../core/errors.js';
import type { MachineNic } from '../provider.js';

/**
 * How the qemu provider maps a site network onto qemu networking: each card gets a user-mode network (slirp) laid
 * out as the site network, `net=<the network's CIDR>`, whose DHCP server hands the guest exactly the address the
 * orchestration assigned (`dhcpstart=<ipv4>`, the first lease). No root, no bridge, and nothing shared with the
 * host's own networks, so it works on any host. An isolated network (the test network of a test failover) is
 * `restrict=on`: the guest reaches nothing outside it, as ASR's isolated test network. In a slirp network the
 * gateway is the network's first host address, the host side its second and DNS its third: the orchestration
 * never assigns those (see orchestration/addressing.ts).
 *
 * Machines on one user-mode network do not see each other; a site that needs machine-to-machine traffic between
 * recovered machines uses the libvirt provider (a libvirt network) or hook commands.
 */
export function nicArgs(nics: MachineNic[]): string[] {
  if (nics.length === 0) return ['-nic', 'none'];
  const args: string[] = [];
  for (const [i, nic] of nics.entries()) {
    const opts = [`user`, `id=net${i}`];
    if (nic.cidr) opts.push(`net=${nic.cidr}`);
    if (nic.ipv4) {
      if (!nic.cidr) throw new RefugeError('invalid_argument', `network card ${i} (${nic.network}) has address ${nic.ipv4} but its network has no CIDR`);
      opts.push(`dhcpstart=${nic.ipv4}`);
    }
    if (nic.isolated) opts.push('restrict=on');
    args.push('-netdev', opts.join(','));
    args.push('-device', `virtio-net-pci,netdev=net${i}${nic.mac ? `,mac=${nic.mac}` : ''}`);
  }
  return args;
}
