import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Native addons and fs-ext misbehave in worker threads: keep process forks.
    pool: 'forks',
    testTimeout: 60_000,
    globalSetup: ['test/global-setup.ts'],
    setupFiles: ['test/support/cleanup.ts'],
  },
});
