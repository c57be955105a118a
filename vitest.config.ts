import { cloudflareTest, readD1Migrations } from '@cloudflare/vitest-pool-workers';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'node',
          include: ['test/**/*.test.ts'],
          exclude: ['test/edge/**'],
          environment: 'node',
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
      {
        plugins: [
          cloudflareTest(async () => ({
            wrangler: { configPath: './edge/wrangler.jsonc' },
            miniflare: {
              bindings: {
                // The D1 schema, applied by test/edge/setup.ts in every test file's fresh storage.
                TEST_MIGRATIONS: await readD1Migrations('./edge/migrations'),
                // A small upload limit, so the size check is testable without 50 MB bodies.
                FILE_MAX_BYTES: 64 * 1024,
                // A short worker timeout, so a generation that outlasts it is testable in seconds.
                WORKER_TIMEOUT_MS: 1000,
              },
            },
          })),
        ],
        test: {
          name: 'edge',
          include: ['test/edge/**/*.test.ts'],
          setupFiles: ['./test/edge/setup.ts'],
          testTimeout: 20_000,
        },
      },
    ],
  },
});
