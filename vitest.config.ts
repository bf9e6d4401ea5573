import { defineConfig } from 'vitest/config';

// Two cores on the reference machine: keep parallelism modest, and give real-server tests room.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
