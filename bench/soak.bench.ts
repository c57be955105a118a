// Soak: the platform as `npm start` runs it, several tenants at once for a few minutes (completions, streams aborted mid-way, training jobs, cancels, bad uploads, over-context prompts), the worker SIGKILLed twice; keys requests, client_errors_as_5xx, lost_jobs, jobs_double_billed, tokens_unbilled, orphaned_adapters, p99_ms, worker_restarts.
//
// SOAK_SECONDS (default 180) bounds the traffic phase, SOAK_TENANTS (default 3) the tenants;
// SOAK_S3=1 puts the adapter store on a local S3 server behind the fault proxy (5xx, resets,
// stalls). Everything binds 127.0.0.1. The backbone is the small random checkpoint `npm start`
// generates without models/ (fast on 2 cores).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { type AdapterStore, FsAdapterStore, S3AdapterStore } from '../adapters/index.ts';
import { DEFAULT_BACKBONE_NAME, startPlatform } from '../scripts/platform.ts';
import { FaultProxy } from '../test/helpers/fault-proxy.ts';
import { type LocalS3, startLocalS3, TEST_CREDENTIALS } from '../test/helpers/s3-server.ts';

const SECONDS = Number(process.env.SOAK_SECONDS ?? 180);
const TENANTS = Number(process.env.SOAK_TENANTS ?? 3);
const WITH_S3 = process.env.SOAK_S3 === '1';
const root = mkdtempSync(join(tmpdir(), 'ladder-soak-'));
const say = (l: string) => console.error(`[soak] ${l}`);

let s3: LocalS3 | undefined;
let proxy: FaultProxy | undefined;
const s3Env: Record<string, string> = {};
if (WITH_S3) {
  s3 = await startLocalS3('soak');
  proxy = await new FaultProxy({
    targetPort: s3.port,
    rate: 0.03,
    faults: ['http-503', 'reset', 'stall'],
    seed: 11,
  }).listen();
  Object.assign(s3Env, {
    LADDER_S3_BUCKET: s3.bucket,
    LADDER_S3_ENDPOINT: proxy.endpoint,
    LADDER_S3_REGION: 'us-east-1',
    LADDER_S3_FORCE_PATH_STYLE: 'true',
    LADDER_S3_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId,
    LADDER_S3_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey,
  });
}

const platformLog: string[] = [];
const platform = await startPlatform({
  dataDir: root,
  edgePort: 0,
  workerPort: 0,
  backboneName: DEFAULT_BACKBONE_NAME,
  workerEnv: { LADDER_INTRA_OP_THREADS: '1', LADDER_CHECKPOINT_EVERY_STEPS: '5', ...s3Env },
  restart: { initialDelayMs: 500 },
  log: (l) => {
    platformLog.push(l);
    if (platformLog.length > 2000) platformLog.shift();
  },
});
say(`platform up: edge ${platform.edgeUrl}, worker ${platform.workerUrl}`);

// --- what is counted ---
let requests = 0;
let clientErrorsAs5xx = 0;
let serverErrors = 0;
let unexpected = 0;
const latencies: number[] = [];

async function api(
  key: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: unknown }> {
  requests++;
  const res = await fetch(`${platform.edgeUrl}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${key}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...headers,
    },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(120_000),
  });
  const text = await res.text();
  if (res.status >= 500) serverErrors++;
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {}
  return { status: res.status, body: parsed };
}

/** A request that is the client's fault: anything but a 4xx is counted. */
async function expectClientError(what: string, p: Promise<{ status: number; body: unknown }>) {
  const r = await p;
  if (r.status >= 500) {
    clientErrorsAs5xx++;
    say(`${what}: ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`);
  } else if (r.status < 400) unexpected++;
}

// --- the worker's own generated-token counter, summed over its processes ---
let tokensBefore = 0; // completed processes
let tokensNow = 0; // the current process, last scrape
async function scrapeTokens(): Promise<void> {
  try {
    const text = await (
      await fetch(`${platform.workerUrl}/metrics`, { signal: AbortSignal.timeout(2000) })
    ).text();
    const m = /^ladder_completion_tokens_total (\d+)/m.exec(text);
    if (m) tokensNow = Number(m[1]);
  } catch {}
}
platform.worker.onRestart(() => {
  tokensBefore += tokensNow;
  tokensNow = 0;
});
const scraper = setInterval(() => void scrapeTokens(), 500);

// --- tenants ---
const admin = platform.adminToken;
const tenants: { id: string; key: string }[] = [];
for (let i = 0; i < TENANTS; i++) {
  const t = (await api(admin, 'POST', '/admin/v1/tenants', { name: `soak-${i}` })).body as { id: string };
  const k = (await api(admin, 'POST', `/admin/v1/tenants/${t.id}/keys`, { name: 'soak' })).body as {
    key: string;
  };
  tenants.push({ id: t.id, key: k.key });
}
const DATA = Array.from({ length: 16 }, (_, i) =>
  JSON.stringify({ prompt: `k${i} =`, completion: ` v${i % 5}` }),
).join('\n');
type Job = { id: string; status: string; fine_tuned_model: string | null; trained_tokens: number | null };
const jobs: { tenant: number; id: string; cancel: boolean }[] = [];

const deadline = Date.now() + SECONDS * 1000;
const live = () => Date.now() < deadline;
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function completion(key: string, i: number): Promise<void> {
  const t0 = performance.now();
  const chat = i % 2 === 0;
  const r = await api(key, 'POST', chat ? '/v1/chat/completions' : '/v1/completions', {
    model: DEFAULT_BACKBONE_NAME,
    ...(chat ? { messages: [{ role: 'user', content: `hello ${i}` }] } : { prompt: `k${i % 16} =` }),
    max_tokens: 8 + (i % 8),
  });
  if (r.status === 200) latencies.push(performance.now() - t0);
}

async function stream(key: string, i: number, abortEarly: boolean): Promise<void> {
  requests++;
  const t0 = performance.now();
  const abort = new AbortController();
  try {
    const res = await fetch(`${platform.edgeUrl}/v1/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        model: DEFAULT_BACKBONE_NAME,
        prompt: `k${i % 16} =`,
        max_tokens: abortEarly ? 64 : 16,
        stream: true,
        stream_options: { include_usage: true },
      }),
      signal: abort.signal,
    });
    if (res.status >= 500) serverErrors++;
    if (!res.ok || !res.body) return void (await res.text());
    const reader = res.body.getReader();
    let chunks = 0;
    for (;;) {
      const { done } = await reader.read();
      if (done) break;
      if (abortEarly && ++chunks >= 2) {
        abort.abort(); // the client hangs up mid-stream
        return;
      }
    }
    latencies.push(performance.now() - t0);
  } catch {}
}

async function training(ti: number, cancel: boolean): Promise<void> {
  const { key } = tenants[ti]!;
  const file = await api(key, 'POST', '/v1/files?purpose=fine-tune&filename=soak.jsonl', DATA, {
    'content-type': 'application/jsonl',
  });
  if (file.status !== 200) return;
  const created = await api(
    key,
    'POST',
    '/v1/fine_tuning/jobs',
    {
      model: DEFAULT_BACKBONE_NAME,
      training_file: (file.body as { id: string }).id,
      method: { type: 'lst', hyperparameters: { n_epochs: 6, batch_size: 4, learning_rate: 0.01 } },
      suffix: `soak${ti}${cancel ? 'c' : ''}`,
    },
    { 'idempotency-key': `soak-${ti}-${cancel}` },
  );
  if (created.status !== 200) return say(`job create: ${created.status} ${JSON.stringify(created.body)}`);
  const id = (created.body as Job).id;
  jobs.push({ tenant: ti, id, cancel });
  if (!cancel) return;
  // Cancel once it runs (or after a while queued).
  for (let i = 0; i < 60 && live(); i++) {
    const j = (await api(key, 'GET', `/v1/fine_tuning/jobs/${id}`)).body as Job;
    if (j.status !== 'queued') break;
    await pause(1000);
  }
  await api(key, 'POST', `/v1/fine_tuning/jobs/${id}/cancel`);
}

async function tenantLoop(ti: number): Promise<void> {
  const { key } = tenants[ti]!;
  void training(ti, false);
  let i = 0;
  while (live()) {
    i++;
    try {
      const roll = i % 10;
      if (roll < 4) await completion(key, i);
      else if (roll < 6) await stream(key, i, false);
      else if (roll < 8) await stream(key, i, true);
      else if (roll === 8)
        await expectClientError(
          'bad upload',
          api(
            key,
            'POST',
            '/v1/files?purpose=fine-tune&filename=bad.jsonl',
            '{"prompt":"a","completion":"b"}\n{"prompt":1}',
            {
              'content-type': 'application/jsonl',
            },
          ),
        );
      else
        await expectClientError(
          'prompt over the context',
          api(key, 'POST', '/v1/completions', {
            model: DEFAULT_BACKBONE_NAME,
            prompt: 'hello '.repeat(4000),
            max_tokens: 4,
          }),
        );
      if (i === 15) void training(ti, true);
    } catch (e) {
      say(`tenant ${ti}: ${(e as Error).message}`);
    }
  }
}

// --- chaos: the worker SIGKILLed at a third and two thirds of the run ---
async function chaos(): Promise<void> {
  for (const at of [0.35, 0.7]) {
    const wait = deadline - SECONDS * 1000 * (1 - at) - Date.now();
    if (wait > 0) await pause(wait);
    await scrapeTokens();
    const pid = platform.worker.pid();
    if (pid === undefined) continue;
    say(`SIGKILL worker ${pid}`);
    process.kill(pid, 'SIGKILL');
  }
}

const t0 = Date.now();
await Promise.all([...tenants.map((_, i) => tenantLoop(i)), chaos()]);
say(`traffic done after ${Math.round((Date.now() - t0) / 1000)} s; waiting for jobs`);

// --- jobs: every job not cancelled must succeed, each billed once ---
const finished = new Map<string, Job>();
const jobsDeadline = Date.now() + 240_000;
while (finished.size < jobs.length && Date.now() < jobsDeadline) {
  for (const j of jobs) {
    if (finished.has(j.id)) continue;
    const r = await api(tenants[j.tenant]!.key, 'GET', `/v1/fine_tuning/jobs/${j.id}`).catch(() => undefined);
    const job = r?.body as Job | undefined;
    if (job && ['succeeded', 'failed', 'cancelled'].includes(job.status)) finished.set(j.id, job);
  }
  await pause(1000);
}
let lostJobs = 0;
for (const j of jobs) {
  const f = finished.get(j.id);
  const ok = j.cancel ? f?.status === 'cancelled' || f?.status === 'succeeded' : f?.status === 'succeeded';
  if (!ok) {
    lostJobs++;
    say(`lost job ${j.id} (cancel=${j.cancel}): ${f?.status ?? 'never finished'}`);
  }
}
await pause(3000);
await scrapeTokens();
clearInterval(scraper);

// --- billing: the edge's usage against the worker's counters ---
type Usage = { data: { model: string; completion_tokens: number; training_tokens: number }[] };
let billedCompletion = 0;
let jobsDoubleBilled = 0;
for (const [ti, t] of tenants.entries()) {
  const usage = (await api(t.key, 'GET', '/v1/usage')).body as Usage;
  for (const b of usage.data ?? []) billedCompletion += b.completion_tokens;
  for (const j of jobs.filter((x) => x.tenant === ti)) {
    const f = finished.get(j.id);
    const billed = (usage.data ?? [])
      .filter((b) => f?.fine_tuned_model && b.model === f.fine_tuned_model)
      .reduce((s, b) => s + b.training_tokens, 0);
    if (f?.status === 'succeeded' && f.trained_tokens !== null && billed > f.trained_tokens)
      jobsDoubleBilled++;
    if (f?.status === 'cancelled' && billed > 0) jobsDoubleBilled++;
  }
}
const generated = tokensBefore + tokensNow;

// --- adapters: every stored adapter is a registered model; deleting the models leaves none ---
const store = (tenant: string): AdapterStore =>
  s3
    ? new S3AdapterStore({ ...s3.storeOptions(), tenant })
    : new FsAdapterStore({ dataDir: join(root, 'worker'), tenant });
let orphanedAdapters = 0;
proxy?.set({ rate: 0 });
for (const t of tenants) {
  const models = ((await api(t.key, 'GET', '/v1/models')).body as { data: { id: string; kind: string }[] })
    .data;
  const registered = new Set(models.filter((m) => m.kind === 'adapter').map((m) => m.id.split(':').at(-1)));
  const stored = (await store(t.id).list({ limit: 1000 })).items.map((m) => m.adapter_id);
  for (const a of stored)
    if (!registered.has(a)) {
      orphanedAdapters++;
      say(`orphaned adapter ${a} of tenant ${t.id}`);
    }
  for (const m of models.filter((x) => x.kind === 'adapter'))
    await api(t.key, 'DELETE', `/v1/models/${encodeURIComponent(m.id)}`);
}
await pause(2000);
for (const t of tenants) {
  const left = (await store(t.id).list({ limit: 1000 })).items.length;
  if (left) say(`${left} adapter(s) of tenant ${t.id} left after deleting its models`);
  orphanedAdapters += left;
}

const restarts = platform.worker.restarts();
await platform.stop();
await proxy?.close();
await s3?.stop();
rmSync(root, { recursive: true, force: true });

latencies.sort((a, b) => a - b);
const p99 = latencies.length
  ? latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * 0.99))]!
  : null;
console.log(
  JSON.stringify({
    seconds: SECONDS,
    tenants: TENANTS,
    s3: WITH_S3,
    requests,
    client_errors_as_5xx: clientErrorsAs5xx,
    server_errors: serverErrors,
    unexpected_2xx: unexpected,
    jobs: jobs.length,
    lost_jobs: lostJobs,
    jobs_double_billed: jobsDoubleBilled,
    tokens_generated: generated,
    tokens_billed: billedCompletion,
    tokens_unbilled: generated - billedCompletion,
    orphaned_adapters: orphanedAdapters,
    p99_ms: p99 === null ? null : Math.round(p99),
    worker_restarts: restarts,
  }),
);
process.exit(0);
