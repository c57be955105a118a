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
            // The D1 schema, applied by test/edge/setup.ts in every test file's fresh storage.
            miniflare: { bindings: { TEST_MIGRATIONS: await readD1Migrations('./edge/migrations') } },
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
