import { SELF } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { deriveWorkerSecret, type Heartbeat, signRequest, WORKER_HEADER } from '@ladder/schemas';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createEdgeApp } from '../../edge/src/app.ts';
import { FILE_URL_TTL_S, signedFileUrl } from '../../edge/src/lib/file-urls.ts';
import { type ApiErrorBody, call, eventually, json, newTenant, uploadFile } from './helpers/api.ts';
import { interceptWorkers, StandInWorker, signedPost } from './helpers/stand-in-worker.ts';

const HEARTBEAT = '/internal/v1/workers/heartbeat';

function heartbeat(workerId: string, url = `http://${workerId}.stand-in.test:9000`): Heartbeat {
  return {
    worker_id: workerId,
    url,
    backbone: { name: 'ladder-tiny', fingerprint: 'a'.repeat(64) },
    capacity: { queue_depth: 0, max_queue: 8, running_jobs: 0 },
    loaded_adapters: [],
  };
}

describe('development secrets outside development', () => {
  const app = createEdgeApp();
  const ask = async (overrides: Record<string, unknown>, path = '/healthz') => {
    const res = await app.request(path, {}, { ...env, ...overrides });
    return { status: res.status, body: (await res.json()) as ApiErrorBody };
  };

  it('answers 503 naming the setting while ADMIN_TOKEN or WORKER_SIGNING_SECRET is the published default', async () => {
    const admin = await ask({ LADDER_ENV: 'production', WORKER_SIGNING_SECRET: 'a-real-master-secret-0123' });
    expect(admin.status).toBe(503);
    expect(admin.body.error).toMatchObject({ type: 'server_error', code: 'edge_misconfigured' });
    expect(admin.body.error.message).toMatch(/ADMIN_TOKEN is the published development default/);

    const signing = await ask(
      { LADDER_ENV: 'production', ADMIN_TOKEN: 'a-real-admin-token-0123' },
      '/v1/models',
    );
    expect(signing.status).toBe(503);
    expect(signing.body.error.message).toMatch(/WORKER_SIGNING_SECRET is the published development default/);

    const unset = await ask({ LADDER_ENV: 'production', ADMIN_TOKEN: undefined });
    expect(unset.status).toBe(503);
    expect(unset.body.error.message).toMatch(/ADMIN_TOKEN is not set/);
  });

  it('serves with secrets of its own, and in development with the published ones', async () => {
    const own = {
      ADMIN_TOKEN: 'a-real-admin-token-0123',
      WORKER_SIGNING_SECRET: 'a-real-master-secret-0123',
    };
    expect((await ask({ LADDER_ENV: 'production', ...own })).status).toBe(200);
    expect(env.LADDER_ENV).toBe('development'); // edge/.dev.vars, as wrangler dev and npm start read it
    expect((await ask({})).status).toBe(200);
  });
});

describe('each worker its own credential', () => {
  afterEach(() => vi.restoreAllMocks());

  it('registers a worker id only with that worker own credential', async () => {
    expect((await signedPost(HEARTBEAT, heartbeat('trust-a'), { workerId: 'trust-a' })).status).toBe(200);
    // trust-b's credential cannot put trust-a's id on its own URL.
    const hijack = await signedPost(HEARTBEAT, heartbeat('trust-a', 'http://evil.test:9000'), {
      workerId: 'trust-b',
    });
    expect(hijack.status).toBe(403);
    expect(((await hijack.json()) as ApiErrorBody).error).toMatchObject({
      code: 'worker_mismatch',
      param: 'worker_id',
    });
    // Naming trust-a while signing with trust-b's secret does not verify.
    const forged = await signedPost(HEARTBEAT, heartbeat('trust-a'), {
      workerId: 'trust-a',
      secret: await deriveWorkerSecret(env.WORKER_SIGNING_SECRET, 'trust-b'),
    });
    expect(forged.status).toBe(401);
    // Nor does the master secret itself: no worker holds it.
    const master = await signedPost(HEARTBEAT, heartbeat('trust-a'), {
      workerId: 'trust-a',
      secret: env.WORKER_SIGNING_SECRET,
    });
    expect(master.status).toBe(401);
  });

  it('accepts a signed callback once: a captured one replayed is refused, a retry is not', async () => {
    const body = JSON.stringify(heartbeat('trust-replay'));
    const secret = await deriveWorkerSecret(env.WORKER_SIGNING_SECRET, 'trust-replay');
    const headers = {
      ...(await signRequest(secret, 'POST', HEARTBEAT, body)),
      [WORKER_HEADER]: 'trust-replay',
      'content-type': 'application/json',
    };
    const send = () => SELF.fetch(`https://edge.test${HEARTBEAT}`, { method: 'POST', body, headers });
    expect((await send()).status).toBe(200);
    const again = await send();
    expect(again.status).toBe(401);
    expect(((await again.json()) as ApiErrorBody).error.code).toBe('replay');
    // The worker's own retry of the same bytes is signed anew (another nonce) and goes through.
    expect(
      (await signedPost(HEARTBEAT, heartbeat('trust-replay'), { workerId: 'trust-replay' })).status,
    ).toBe(200);
  });

  it('takes a job event only from the worker that holds the job', async () => {
    const holder = new StandInWorker('trust-holder');
    const other = new StandInWorker('trust-other', 'ladder-other');
    interceptWorkers(holder, other);
    expect((await holder.heartbeat()).status).toBe(200);
    expect((await other.heartbeat()).status).toBe(200);
    const t = await newTenant();
    const file = await uploadFile(t.key);
    const job = await json<{ id: string }>(
      await call('/v1/fine_tuning/jobs', {
        key: t.key,
        body: { model: 'ladder-tiny', training_file: file.id },
      }),
    );
    const start = await eventually(async () => holder.jobs.find((j) => j.job_id === job.id));
    await eventually(async () => {
      const j = await json<{ status: string }>(await call(`/v1/fine_tuning/jobs/${job.id}`, { key: t.key }));
      return j.status === 'running' ? j : undefined;
    });
    const forged = await other.sendEvent(start, { event_id: 'forged-1', type: 'progress', step: 2 });
    expect(forged.status).toBe(403);
    expect(((await forged.json()) as ApiErrorBody).error.code).toBe('worker_mismatch');
    expect((await holder.sendEvent(start, { event_id: 'real-1', type: 'progress', step: 1 })).status).toBe(
      200,
    );
  });
});

describe('training-file URLs', () => {
  it('refuses an expiry further out than the edge hands out, and a URL signed with the master secret', async () => {
    const t = await newTenant();
    const file = await uploadFile(t.key);
    const fetchUrl = async (url: string) => (await call(new URL(url).pathname + new URL(url).search)).status;
    expect(await fetchUrl(await signedFileUrl(env, t.id, file.id))).toBe(200);
    // Correctly signed, but valid for ten years.
    const forever = await signedFileUrl(env, t.id, file.id, Date.now() + 10 * 365 * 86400 * 1000);
    expect(await fetchUrl(forever)).toBe(401);
    // What a worker could sign: HMAC with the master secret (the key the URLs used to share).
    const expires = Math.floor(Date.now() / 1000) + FILE_URL_TTL_S;
    const key = await crypto.subtle.importKey(
      'raw',
      new TextEncoder().encode(env.WORKER_SIGNING_SECRET),
      { name: 'HMAC', hash: 'SHA-256' },
      false,
      ['sign'],
    );
    const mac = await crypto.subtle.sign(
      'HMAC',
      key,
      new TextEncoder().encode(`file\n${t.id}\n${file.id}\n${expires}`),
    );
    const sig = [...new Uint8Array(mac)].map((b) => b.toString(16).padStart(2, '0')).join('');
    const minted = `/internal/v1/files/${file.id}/content?tenant=${t.id}&expires=${expires}&sig=${sig}`;
    expect((await call(minted)).status).toBe(401);
  });
});
