import { DEV_SIGNING_SECRET, deriveWorkerSecret, HealthStatus } from '@ladder/schemas';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadWorkerConfig, type RunningWorker, startWorker } from '../../gpu-worker/index.ts';

describe('gpu-worker over real HTTP on 127.0.0.1', () => {
  let worker: RunningWorker;
  beforeAll(async () => {
    worker = await startWorker({ LADDER_WORKER_HOST: '127.0.0.1', LADDER_WORKER_PORT: 0 });
  });
  afterAll(() => worker.close());

  it('binds loopback only', () => {
    expect(worker.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });

  it('answers /healthz with the shared HealthStatus schema', async () => {
    const res = await fetch(`${worker.url}/healthz`);
    expect(res.status).toBe(200);
    const body = HealthStatus.parse(await res.json());
    expect(body.service).toBe('gpu-worker');
  });

  it('answers unknown routes with an OpenAI-shaped 404', async () => {
    const res = await fetch(`${worker.url}/nope`);
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('not_found');
  });

  it('refuses unsigned internal requests before routing them', async () => {
    expect((await fetch(`${worker.url}/internal/nope`)).status).toBe(401);
  });

  it('is not ready without a backbone', async () => {
    const res = await fetch(`${worker.url}/readyz`);
    expect(res.status).toBe(503);
    expect(await res.text()).toMatch(/LADDER_BACKBONE_DIR/);
  });
});

describe('worker configuration', () => {
  it('fills laptop defaults', () => {
    expect(loadWorkerConfig({})).toMatchObject({
      LADDER_WORKER_HOST: '127.0.0.1',
      LADDER_EXECUTION_PROVIDER: 'cpu',
    });
  });

  it('refuses a development secret when bound beyond loopback, naming LADDER_WORKER_SECRET', async () => {
    const devDerived = await deriveWorkerSecret(DEV_SIGNING_SECRET, 'gpu-7');
    for (const env of [
      { LADDER_WORKER_HOST: '0.0.0.0' },
      { LADDER_WORKER_HOST: '10.1.2.3', LADDER_WORKER_ID: 'gpu-7', LADDER_WORKER_SECRET: devDerived },
    ]) {
      expect(() => loadWorkerConfig(env)).toThrow(/LADDER_WORKER_SECRET is a development default/);
    }
    // Refused before it binds, whichever way it is started.
    await expect(startWorker({ LADDER_WORKER_HOST: '0.0.0.0', LADDER_WORKER_PORT: 0 })).rejects.toThrow(
      /LADDER_WORKER_SECRET/,
    );
    // Loopback keeps the laptop default; beyond it, a worker's own secret is fine.
    expect(() => loadWorkerConfig({})).not.toThrow();
    expect(() =>
      loadWorkerConfig({ LADDER_WORKER_HOST: '0.0.0.0', LADDER_WORKER_SECRET: 'a-real-secret-0123456789' }),
    ).not.toThrow();
  });

  it('refuses a body over the limit from its content-length over real HTTP', async () => {
    const worker = await startWorker({
      LADDER_WORKER_HOST: '127.0.0.1',
      LADDER_WORKER_PORT: 0,
      LADDER_MAX_REQUEST_BYTES: 1024,
    });
    try {
      const { signRequest } = await import('@ladder/schemas');
      const body = 'x'.repeat(4096);
      const res = await fetch(`${worker.url}/internal/v1/generate`, {
        method: 'POST',
        headers: await signRequest('unused-here-0123456789', 'POST', '/internal/v1/generate', body),
        body,
      });
      expect(res.status).toBe(413);
    } finally {
      await worker.close();
    }
  });

  it('names the bad variable', () => {
    expect(() => loadWorkerConfig({ LADDER_WORKER_PORT: 'eighty' })).toThrow(/LADDER_WORKER_PORT/);
    expect(() => loadWorkerConfig({ LADDER_EXECUTION_PROVIDER: 'tpu' })).toThrow(/LADDER_EXECUTION_PROVIDER/);
  });
});
