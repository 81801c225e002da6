import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

/** Debian's Chromium (scripts/setup.sh installs it); playwright-core drives it, and never downloads a browser. */
export const CHROMIUM = process.env.REFUGE_CHROMIUM ?? '/usr/bin/chromium';

export interface PortalBrowser {
  page: Page;
  /** Console errors and uncaught page errors seen so far: a test fails on any. */
  consoleErrors: string[];
  /** Saves a full-page screenshot as test-artifacts/<folder>/<name>.png. */
  screenshot(name: string): Promise<string>;
  close(): Promise<void>;
}

/**
 * Headless Chromium on a laptop-sized window (1366x768), trusting any certificate (the test vault's CA is its
 * own), with a fresh profile (playwright makes one per launch) and no background traffic (the machine has no outside network).
 */
export async function openPortalBrowser(artifacts: string): Promise<PortalBrowser> {
  const folder = join(import.meta.dirname, '..', '..', 'test-artifacts', artifacts);
  await rm(folder, { recursive: true, force: true }); // screenshots of this run only
  await mkdir(folder, { recursive: true });
  const browser: Browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const context: BrowserContext = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1366, height: 768 } });
  const page = await context.newPage();
  const consoleErrors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(`console: ${m.text()} (${m.location().url})`);
  });
  page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`));
  page.setDefaultTimeout(30_000);
  return {
    page,
    consoleErrors,
    async screenshot(name) {
      const path = join(folder, `${name}.png`);
      await page.screenshot({ path, fullPage: true });
      return path;
    },
    async close() {
      await browser.close();
    },
  };
}
