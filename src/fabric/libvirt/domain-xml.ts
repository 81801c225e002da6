import type { MachineSpec } from '../provider.js';

/** Escapes text for XML content and attribute values. */
export function xmlEscape(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c] as string);
}

/**
 * The libvirt domain XML for a machine: emulated (`qemu`) or KVM domain, raw virtio disks in order (vda, vdb, ...),
 * direct kernel boot when the spec asks for it, and the serial console written to `consolePath` so the provider
 * can show what the guest printed. `on_reboot` is destroy, as `-no-reboot` is for the qemu provider.
 */
export function domainXml(domainName: string, spec: MachineSpec, options: { consolePath: string; domainType: 'kvm' | 'qemu' }): string {
  const disks = spec.disks
    .map(
      (d, i) =>
        `    <disk type='file' device='disk'><driver name='qemu' type='${d.format}'/><source file='${xmlEscape(d.path)}'/>` +
        `<target dev='vd${String.fromCharCode(97 + i)}' bus='virtio'/></disk>`,
    )
    .join('\n');
  const boot =
    spec.boot.kind === 'kernel'
      ? `<kernel>${xmlEscape(spec.boot.kernel)}</kernel>` +
        (spec.boot.initrd ? `<initrd>${xmlEscape(spec.boot.initrd)}</initrd>` : '') +
        `<cmdline>${xmlEscape(spec.boot.cmdline ?? '')}</cmdline>`
      : `<boot dev='hd'/>`;
  const console = xmlEscape(options.consolePath);
  return `<domain type='${options.domainType}'>
  <name>${xmlEscape(domainName)}</name>
  <memory unit='MiB'>${spec.memoryMiB}</memory>
  <vcpu>${spec.cpus}</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>${boot}</os>
  <on_reboot>destroy</on_reboot>
  <devices>
${disks}
    <serial type='file'><source path='${console}'/><target port='0'/></serial>
    <console type='file'><source path='${console}'/><target type='serial' port='0'/></console>
  </devices>
</domain>
`;
}
