import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestVault, type TestVault } from '../../helpers/test-vault.js';

/** A site record names its fabric provider and settings; the vault builds that provider for it (no injection). */
describe('site fabric configuration', () => {
  let v: TestVault;
  beforeEach(async () => {
    v = await createTestVault('sqlite', { realFabric: true });
    await v.call('POST', '/api/v1/vaults', { name: 'demo' });
  });
  afterEach(async () => v.cleanup());

  const fabricOf = async (name: string) => v.sites.fabric(await v.repos.sites.get((await v.repos.vaults.get('demo')).id, name));

  it('uses qemu by default, and the provider kind and settings a site is created or updated with', async () => {
    expect((await v.call('POST', '/api/v1/vaults/demo/sites', { name: 'a' })).status).toBe(201);
    expect((await fabricOf('a')).kind).toBe('qemu');
    expect((await fabricOf('a')).hydration).toBeDefined();

    const lv = await v.call<{ provider: string; config: { fabric: unknown } }>('POST', '/api/v1/vaults/demo/sites', { name: 'b', provider: 'libvirt', fabric: { libvirtUri: 'qemu:///system', domainPrefix: 'dr-' } });
    expect(lv.status).toBe(201);
    expect(lv.body.provider).toBe('libvirt');
    expect(lv.body.config.fabric).toEqual({ libvirtUri: 'qemu:///system', domainPrefix: 'dr-' });
    expect((await fabricOf('b')).kind).toBe('libvirt');
    expect((await fabricOf('b')).hydration).toBeUndefined(); // instant recovery needs qemu: restore-first there

    const hooks = { start: '/bin/true', status: '/bin/true', stop: '/bin/true', delete: '/bin/true' };
    const up = await v.call<{ provider: string }>('PATCH', '/api/v1/vaults/demo/sites/a', { provider: 'command', fabric: { hooks, hookTimeoutSeconds: 30 } });
    expect(up.status).toBe(200);
    expect(up.body.provider).toBe('command');
    expect((await fabricOf('a')).kind).toBe('command');
  });

  it('refuses a command site without its hooks, and an unknown provider, with specific errors', async () => {
    const r = await v.call<{ error: { code: string; message: string } }>('POST', '/api/v1/vaults/demo/sites', { name: 'c', provider: 'command' });
    expect(r.status).toBe(400);
    expect(r.body.error.message).toContain('fabric.hooks');
    expect((await v.call('POST', '/api/v1/vaults/demo/sites', { name: 'd', provider: 'vmware' })).status).toBe(400);
    expect((await v.call('POST', '/api/v1/vaults/demo/sites', { name: 'e', fabric: { hooks: { start: 'x' } } })).status).toBe(400);
  });

  it('asking for an instant recovery where the provider cannot do it is refused clearly; the default falls back', async () => {
    const { chooseRecoveryMode } = await import('../../../src/orchestration/jobs/provision-disks.js');
    await v.call('POST', '/api/v1/vaults/demo/sites', { name: 'b', provider: 'libvirt' });
    const site = await v.repos.sites.get((await v.repos.vaults.get('demo')).id, 'b');
    const fabric = v.sites.fabric(site);
    expect(chooseRecoveryMode(undefined, fabric, site)).toBe('restore-first');
    expect(() => chooseRecoveryMode('instant', fabric, site)).toThrow(/libvirt fabric provider, which cannot start them instantly/);
  });
});
