import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts', 'bench/**/*.test.ts'],
    // Every log line of the suite goes to one file, scanned for test patients' identifiers at the end.
    globalSetup: ['test/log-scan.global.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Sandboxes and stores are per test file; two cores are enough for two forks.
    pool: 'forks',
    maxWorkers: 2,
    reporters: process.env.CI ? ['default'] : ['default'],
  },
});
