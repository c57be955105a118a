import { SELF } from 'cloudflare:test';
import { HealthStatus } from '@ladder/schemas';
import { describe, expect, it } from 'vitest';

describe('edge app inside workerd', () => {
  it('runs in the Workers runtime', () => {
    expect(navigator.userAgent).toBe('Cloudflare-Workers');
  });

  it('answers /healthz with the shared HealthStatus schema', async () => {
    const res = await SELF.fetch('https://edge.test/healthz');
    expect(res.status).toBe(200);
    const body = HealthStatus.parse(await res.json());
    expect(body.service).toBe('edge');
  });

  it('answers unknown routes with an OpenAI-shaped 404', async () => {
    const res = await SELF.fetch('https://edge.test/nope');
    expect(res.status).toBe(404);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('not_found');
    expect(body.error.message).toContain('/nope');
  });
});
