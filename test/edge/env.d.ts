declare namespace Cloudflare {
  interface Env {
    /** edge/migrations, read in vitest.config.ts and applied by setup.ts. */
    TEST_MIGRATIONS: import('cloudflare:test').D1Migration[];
  }
}
