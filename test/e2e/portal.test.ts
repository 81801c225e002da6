import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestText } from '../../src/core/http-client.js';
import { GUEST_LINES, waitForConsole } from '../../src/fabric/demo-guest.js';
import { QemuProvider } from '../../src/fabric/qemu/qemu-provider.js';
import { openPortalBrowser, type PortalBrowser } from '../helpers/browser.js';
import { startProtectableVm, type RunningVm } from '../helpers/protected-vm.js';
import { initTestVault, startVaultProcess, type VaultProcess } from '../helpers/vault-process.js';

const VM = 'portal-vm';

interface Rep {
  state: string;
  testFailoverState: string;
}

/**
 * The web portal in headless Chromium (Debian's, driven by playwright-core) against a real `refuge vault` process,
 * with a real VM whose real agent replicates it. Through the pages, as a person would (the login by keyboard):
 * log in, enable replication through the wizard (readiness report first), watch seeding, run a test failover
 * (point, dry-run preview), see the copy boot, clean it up; edit a recovery plan whose group waits for a manual
 * approval before its machine starts, run the plan's test failover, approve the waiting step in the run view and
 * see the copy it held back boot; every page is screenshotted into test-artifacts/portal/, and any console error
 * fails the test.
 */
describe('web portal: the whole flow in a browser', () => {
  let dir: string;
  let vault: VaultProcess;
  let vm: RunningVm | undefined;
  let b: PortalBrowser;
  let shot = 0;
  const screenshot = (name: string) => b.screenshot(`${String(++shot).padStart(2, '0')}-${name}`);
  const rep = () => vault.api<Rep>('GET', `/vaults/demo/replications/${VM}`);
  /** Waits until the job page shows the job (not one of its tasks) in `state`. */
  const jobEnds = (state: string, timeout: number) => expect.poll(() => b.page.getByLabel('job state').textContent(), { timeout, interval: 500 }).toBe(state);
  const open = async (hash: string, heading: string | RegExp) => {
    await b.page.goto(`${vault.url}/#${hash}`);
    await b.page.getByRole('heading', { name: heading, level: 2 }).waitFor();
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'refuge-portal-'));
    const init = await initTestVault(undefined, join(dir, 'vault'));
    vault = await startVaultProcess(init);
    await vault.api('POST', '/vaults', { name: 'demo' });
    await vault.api('POST', '/vaults/demo/sites', { name: 'primary', capacity: { vcpus: 4, memoryMiB: 4096, diskGiB: 20 } });
    await vault.api('POST', '/vaults/demo/sites', { name: 'recovery', capacity: { vcpus: 4, memoryMiB: 4096, diskGiB: 20 } });
    await vault.api('PATCH', '/vaults/demo', { location: 'recovery' });
    await vault.api('POST', '/vaults/demo/policies', { name: 'every-2s', crashIntervalSeconds: 2, rpoThresholdSeconds: 60 });
    // 24 MiB of data sent uncompressed through a 2 MB/s limit: seeding lasts long enough to be watched.
    vm = await startProtectableVm(vault, { dir, name: VM, diskMiB: 64, dataMiB: 24, agentArgs: ['--bandwidth', '2MB/s', '--no-compress'] });
    b = await openPortalBrowser('portal');
  });
  afterAll(async () => {
    await b?.close();
    await new QemuProvider({ workDir: join(dir, 'vault', 'sites', 'recovery', 'machines') }).delete(`${VM}-test`).catch(() => undefined);
    await vm?.stop();
    await vault?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('logs in by keyboard and shows the dashboard', async () => {
    const { page } = b;
    await page.goto(`${vault.url}/`);
    await page.getByRole('button', { name: 'Log in' }).waitFor();
    await screenshot('login');
    await page.keyboard.type('owner'); // the user field has the focus
    await page.keyboard.press('Tab');
    await page.keyboard.type('owner-password-1');
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
    await expect.poll(() => page.getByLabel('Replications count').textContent()).toBe('0');
    await screenshot('dashboard-empty');
  });

  it('enables replication through the wizard, readiness report first, and shows seeding progress', async () => {
    const { page } = b;
    await open('/replications', 'Replications');
    await page.getByRole('link', { name: 'Enable replication' }).click();
    await page.getByRole('heading', { name: 'Enable replication' }).waitFor();
    for (const [field, value] of [['Machine', VM], ['Target site', 'recovery'], ['Policy', 'every-2s']] as const) {
      await page.getByRole('combobox', { name: field }).click();
      await page.getByRole('option', { name: value }).click();
    }
    await screenshot('enable-choose');
    await page.getByRole('button', { name: 'Check readiness' }).click();
    await page.getByText(`Readiness of machine ${VM}`).waitFor();
    const checks = await page.getByRole('row').allTextContents();
    expect(checks.some((r) => r.startsWith('target-capacity'))).toBe(true);
    expect(checks.some((r) => r.startsWith('certificates'))).toBe(true);
    await screenshot('enable-readiness');
    await page.getByRole('button', { name: 'Enable replication' }).click();

    await page.getByRole('heading', { name: `Replication ${VM}` }).waitFor();
    // Watch the progress card until the replication is protected, keeping every distinct line it showed.
    const seen = new Set<string>();
    let screenshotted = false;
    for (;;) {
      const card = page.getByLabel('replication progress');
      if (await card.isVisible()) {
        const text = (await card.textContent().catch(() => '')) ?? '';
        if (/^Seeding: .* of [\d.]+ MiB shipped/.test(text)) seen.add(text);
        if (!screenshotted && /Seeding: [1-9]/.test(text)) {
          await screenshot('seeding');
          screenshotted = true;
        }
      }
      if ((await rep()).state === 'protected') break;
      await page.waitForTimeout(200);
    }
    // Progress moved on the page: at least two different amounts of "done of total".
    expect(seen.size).toBeGreaterThanOrEqual(2);
    expect([...seen].some((l) => /^Seeding: [1-9]/.test(l))).toBe(true);
    await page.getByText('PROTECTED').first().waitFor();
    await page.getByLabel('recovery points').waitFor();
    await screenshot('replication-protected');
  });

  /** The test copy's console, through the vault's API. */
  const consoleText = () => requestText(`${vault.url}/api/v1/vaults/demo/sites/recovery/machines/${VM}-test/console`, { connection: vault.connection });
  /** Waits until the test copy's guest read back the marker the primary guest wrote: it booted from a point of it. */
  const copyReadTheMarker = async () => {
    const read = await waitForConsole(consoleText, new RegExp(`${GUEST_LINES.markerRead}(\\S+)`), 180_000, 'the test copy');
    expect(read[1]).toBe(vm?.marker);
  };

  it('runs a test failover from the wizard (point, dry-run preview) and boots the copy', async () => {
    const { page } = b;
    await page.waitForTimeout(5000); // a few more points for the chart and the point list
    await open('/', 'Dashboard');
    await page.getByLabel(`RPO of ${VM}`).waitFor();
    await screenshot('dashboard');

    await open(`/replications/${VM}`, `Replication ${VM}`);
    await page.getByRole('button', { name: 'Test failover', exact: true }).click();
    await page.getByRole('heading', { name: `Test failover of ${VM}` }).waitFor();
    await page.getByRole('radio', { name: /^Latest/ }).check();
    await screenshot('failover-point');
    await page.getByRole('button', { name: 'Preview', exact: true }).click();
    await page.getByLabel('preview').waitFor();
    expect(await page.getByLabel('preview').textContent()).toContain(`Start ${VM}-test at site recovery`);
    await screenshot('failover-preview');
    await page.getByRole('button', { name: 'Start test failover' }).click();

    await page.getByRole('heading', { name: 'Job test-failover' }).waitFor();
    await jobEnds('succeeded', 300_000);
    await screenshot('job-succeeded');
    await expect.poll(async () => (await rep()).testFailoverState).toBe('running');
    await copyReadTheMarker();
  });

  it('cleans up the test failover from the replication page', async () => {
    const { page } = b;
    await open(`/replications/${VM}`, `Replication ${VM}`);
    await page.getByRole('button', { name: 'Clean up test failover' }).click();
    await page.getByRole('dialog').waitFor();
    await screenshot('cleanup-confirm');
    await page.getByRole('button', { name: 'Confirm' }).click();
    await page.getByRole('heading', { name: 'Job test-failover-cleanup' }).waitFor();
    await jobEnds('succeeded', 120_000);
    await screenshot('cleanup-job');
    await expect.poll(async () => (await rep()).testFailoverState).toBe('none');
  });

  it('edits a recovery plan whose group waits for a manual approval before its machine starts', async () => {
    const { page } = b;
    await open('/plans', 'Recovery plans');
    await page.getByRole('link', { name: 'New plan' }).click();
    await page.getByRole('textbox', { name: 'Name', exact: true }).fill('portal-plan');
    await page.getByRole('textbox', { name: 'Group name' }).fill('app');
    await page.getByRole('combobox', { name: 'Machines (replications)' }).click();
    await page.getByRole('option', { name: VM }).click();
    await page.keyboard.press('Escape');
    await page.getByRole('button', { name: 'Add action' }).first().click(); // before the group starts
    await page.getByRole('textbox', { name: 'Instruction' }).fill('check the isolated network, then approve');
    await screenshot('plan-editor');
    await page.getByRole('button', { name: 'Save plan' }).click();
    await page.getByRole('link', { name: 'portal-plan' }).waitFor();
    await screenshot('plans');
    const plan = await vault.api<{ groups: { name: string; replications: string[]; post: { kind: string; target: string }[] }[] }>('GET', '/vaults/demo/recovery-plans/portal-plan');
    expect(plan.groups).toEqual([{ name: 'app', replications: [VM], pre: [{ name: 'step-1', kind: 'manual', target: 'check the isolated network, then approve' }], post: [] }]);
  });

  it("runs the plan's test failover and approves its manual step in the run view; only then the copy boots", async () => {
    const { page } = b;
    await open('/plans', 'Recovery plans');
    await page.getByRole('row', { name: /portal-plan/ }).first().getByRole('button', { name: 'test-failover', exact: true }).click();
    await page.getByRole('heading', { name: 'Job plan-test-failover' }).waitFor();
    await page.getByRole('link', { name: 'portal-plan' }).waitFor(); // the run view says which plan it runs
    const approval = page.getByLabel('manual step');
    await approval.waitFor({ timeout: 120_000 });
    expect(await approval.textContent()).toContain('step-1: check the isolated network, then approve');
    // The step holds the group back: nothing was asked of the machine yet.
    expect((await rep()).testFailoverState).toBe('none');
    const held = await vault.api<{ items: { type: string }[] }>('GET', `/vaults/demo/jobs?replication=${VM}&type=test-failover`);
    expect(held.items).toHaveLength(1); // the wizard's, cleaned up above
    await screenshot('plan-run-waiting-for-approval');
    await page.getByLabel('Comment (kept with the answer)').fill('bubble checked by the portal test');
    await page.getByRole('button', { name: 'Approve' }).click();
    await jobEnds('succeeded', 300_000);
    await screenshot('plan-run-succeeded');

    // The approval let the group start: its machine's test copy booted from a point of it.
    expect((await rep()).testFailoverState).toBe('running');
    await copyReadTheMarker();
    const runs = await vault.api<{ items: { id: string; state: string; tasks: { name: string; state: string; input: unknown }[] }[] }>('GET', '/vaults/demo/recovery-plans/portal-plan/jobs');
    expect(runs.items).toHaveLength(1);
    expect(runs.items[0]?.state).toBe('succeeded');
    expect(runs.items[0]?.tasks.map((t) => [t.name, t.state])).toEqual([['group-1-pre-step-1', 'succeeded'], ['group-1-machines', 'succeeded']]);
    expect(runs.items[0]?.tasks[0]?.input).toMatchObject({ approved: true, comment: 'bubble checked by the portal test', by: 'user:owner' });

    // The plan's runs are listed with the plan; its cleanup removes the copy.
    await open('/plans', 'Recovery plans');
    await page.getByRole('link', { name: 'portal-plan: plan-test-failover', exact: true }).waitFor();
    await page.getByRole('row', { name: /portal-plan/ }).first().getByRole('button', { name: 'test-failover-cleanup', exact: true }).click();
    await page.getByRole('heading', { name: 'Job plan-test-failover-cleanup' }).waitFor();
    await jobEnds('succeeded', 120_000);
    await screenshot('plan-cleanup');
    expect((await rep()).testFailoverState).toBe('none');
  });

  it('shows sites, jobs, drills with the last RTO, and readiness with remediations', async () => {
    const { page } = b;
    await open('/sites', 'Sites');
    expect(await page.getByLabel('site recovery').textContent()).toContain('1 replication(s) target it');
    await screenshot('sites');
    await open('/jobs', 'Jobs');
    await page.getByRole('link', { name: 'plan-test-failover-cleanup', exact: true }).waitFor();
    await screenshot('jobs');
    await open('/drills', 'Drills');
    const row = page.getByRole('row', { name: new RegExp(VM) });
    await expect.poll(async () => (await row.textContent()) ?? '').toMatch(/succeeded[\d.]+ (ms|s|min)/i);
    await screenshot('drills');
    await open('/readiness', 'Readiness');
    await page.getByRole('combobox', { name: 'subject to check' }).click();
    await page.getByRole('option', { name: 'site:recovery' }).click();
    await page.getByRole('button', { name: 'Run checks' }).click();
    await page.getByText('Readiness of site recovery').waitFor();
    await screenshot('readiness');
  });

  it('logged no console error on any page', () => {
    expect(b.consoleErrors).toEqual([]);
  });
});
