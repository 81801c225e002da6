import { defineConfig } from 'vitest/config';

/**
 * Two suites: `unit` (fast, no VMs) and `e2e` (real qemu VMs and processes). Both run two files at a time, which
 * a CI machine's two cores carry: the end-to-end files mostly wait (on guests booting, on a link cut for two
 * minutes), so two at a time took the suite from 14 to 8 minutes. Every e2e file makes its own folders, ports,
 * network namespaces and database schemas, so files never share state. Timings are never asserted (see bench/).
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
