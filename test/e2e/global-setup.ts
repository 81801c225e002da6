import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { ensureDemoGuest } from '../../src/fabric/demo-guest.js';

/**
 * The end-to-end suite runs the real `refuge` command (bin/refuge.js -> dist/) and serves the built portal, so it builds first: a stale build
 * must never be what gets tested (unless REFUGE_JUST_BUILT=1 says the caller has just built, as scripts/test.sh does). The demo guest is built here once for every file.
 */
export default async function setup(): Promise<void> {
  const root = join(import.meta.dirname, '..', '..');
  // scripts/test.sh runs scripts/setup.sh, which has just built this checkout, and says so: building again would
  // only cost CI time.
  if (process.env.REFUGE_JUST_BUILT !== '1') {
    execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
    execFileSync('npx', ['vite', 'build', '--config', 'src/portal/vite.config.ts'], { cwd: root, stdio: 'inherit' }); // the web portal
  }
  await ensureDemoGuest();
}
