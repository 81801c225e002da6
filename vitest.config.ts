import { defineConfig } from 'vitest/config';

/**
 * Two suites: `unit` (fast, no VMs; runs in parallel) and `e2e` (real qemu VMs and processes; one file at a time,
 * since two cores are all a CI machine has). Both run in CI; timings are never asserted (see bench/).
 */
export default defineConfig({
  test: {
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
          fileParallelism: false,
        },
      },
    ],
  },
});
