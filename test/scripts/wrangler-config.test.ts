import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { unstable_readConfig } from 'wrangler';
import { DEV_SIGNING_SECRET, deriveWorkerSecret } from '../../schemas/index.ts';
import { ROOT } from '../../scripts/platform.ts';

describe('what `wrangler deploy` ships', () => {
  it('carries no secret and does not say development: those are in edge/.dev.vars only', () => {
    const cfg = unstable_readConfig({ config: join(ROOT, 'edge', 'wrangler.jsonc') });
    const vars = cfg.vars as Record<string, unknown>;
    expect(vars).not.toHaveProperty('ADMIN_TOKEN');
    expect(vars).not.toHaveProperty('WORKER_SIGNING_SECRET');
    expect(vars.LADDER_ENV).not.toBe('development');
  });
});

describe('scripts/worker-secret.ts', () => {
  it("prints a worker's own secret as the edge derives it", async () => {
    const out = execFileSync(
      process.execPath,
      ['--import', 'tsx', join(ROOT, 'scripts', 'worker-secret.ts'), 'gpu-7'],
      { env: { ...process.env, WORKER_SIGNING_SECRET: DEV_SIGNING_SECRET }, encoding: 'utf8' },
    );
    expect(out.trim()).toBe(await deriveWorkerSecret(DEV_SIGNING_SECRET, 'gpu-7'));
  });
});
