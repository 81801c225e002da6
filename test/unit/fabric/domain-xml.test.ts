import { describe, expect, it } from 'vitest';
import { domainXml, xmlEscape } from '../../../src/fabric/libvirt/domain-xml.js';

describe('libvirt domain XML', () => {
  it('escapes every value that comes from outside', () => {
    expect(xmlEscape(`a<b>&'"`)).toBe('a&lt;b&gt;&amp;&apos;&quot;');
    const xml = domainXml("refuge-x", {
      name: 'x', cpus: 2, memoryMiB: 512,
      disks: [{ path: "/d/it's<1>.raw", format: 'raw' }, { path: '/d/2.raw', format: 'raw' }],
      boot: { kind: 'kernel', kernel: '/k', initrd: '/i', cmdline: 'console=ttyS0 a=<x>' },
    }, { consolePath: '/c/console.log', domainType: 'qemu' });
    expect(xml).toContain("<source file='/d/it&apos;s&lt;1&gt;.raw'/>");
    expect(xml).toContain("<target dev='vda' bus='virtio'/>");
    expect(xml).toContain("<target dev='vdb' bus='virtio'/>");
    expect(xml).toContain('<cmdline>console=ttyS0 a=&lt;x&gt;</cmdline>');
    expect(xml).toContain("<domain type='qemu'>");
    expect(xml).toContain('<vcpu>2</vcpu>');
    expect(xml).not.toContain('<x>');
  });

  it('boots from the first disk when there is no kernel', () => {
    const xml = domainXml('d', { name: 'd', cpus: 1, memoryMiB: 128, disks: [{ path: '/a', format: 'raw' }], boot: { kind: 'disk' } }, { consolePath: '/c', domainType: 'kvm' });
    expect(xml).toContain("<boot dev='hd'/>");
    expect(xml).not.toContain('<kernel>');
  });
});
