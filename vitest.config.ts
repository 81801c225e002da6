import { defineConfig } from 'vitest/config';

/**
 * Two suites: `unit` (fast, no VMs) and `e2e` (real qemu VMs and processes). Both run two files at a time, which
 * a CI machine's two cores carry: the end-to-end files mostly wait (on guests booting, on a link cut for two
 * minutes), so two at a time took the suite from 14 to 8 minutes. Every e2e file makes its own folders, ports,
 * network namespaces (test/helpers/netns.ts keeps two workers' addresses apart) and database schemas, so files
 * never share state; kill-nine and instant-recovery restart a server on the port it had, which the other file could
 * take meanwhile (unlikely: not seen). Timings are never asserted (see bench/).
 */
export default defineConfig({
  test: {
    maxWorkers: 2,
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          testTimeout: 30_000,
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          globalSetup: ['test/e2e/global-setup.ts'],
          testTimeout: 600_000,
          hookTimeout: 300_000,
          fileParallelism: true,
        },
      },
    ],
  },
});
