import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { ensureDemoGuest } from '../../src/fabric/demo-guest.js';

/**
 * The end-to-end suite runs the real `refuge` command (bin/refuge.js -> dist/) and serves the built portal, so it builds first: a stale build
 * must never be what gets tested. The demo guest is built here once for every file.
 */
export default async function setup(): Promise<void> {
  const root = join(import.meta.dirname, '..', '..');
  execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
  execFileSync('npx', ['vite', 'build', '--config', 'src/portal/vite.config.ts'], { cwd: root, stdio: 'inherit' }); // the web portal
  await ensureDemoGuest();
}
