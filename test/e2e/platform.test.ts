// The platform as `npm start` runs it (the edge in workerd via wrangler, a real GPU worker process
// with a generated backbone, the filesystem adapter store), driven only through the public HTTP API.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_BACKBONE_NAME, type Platform, startPlatform } from '../../scripts/platform.ts';

const root = mkdtempSync(join(tmpdir(), 'ladder-e2e-'));
let platform: Platform;
const logs: string[] = [];

beforeAll(async () => {
  platform = await startPlatform({
    dataDir: root,
    edgePort: 0,
    workerPort: 0,
    backboneName: DEFAULT_BACKBONE_NAME,
    workerEnv: { LADDER_CHECKPOINT_EVERY_STEPS: '20', LADDER_INTRA_OP_THREADS: '1' },
    log: (line) => logs.push(line),
  });
}, 300_000);

afterAll(async () => {
  await platform?.stop();
  rmSync(root, { recursive: true, force: true });
});

async function api<T>(
  key: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
) {
  const res = await fetch(`${platform.edgeUrl}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${key}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...headers,
    },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : null) as T };
}

async function tenantWithKey(name: string): Promise<string> {
  const t = await api<{ id: string }>(platform.adminToken, 'POST', '/admin/v1/tenants', { name });
  expect(t.status).toBe(201);
  const k = await api<{ key: string }>(platform.adminToken, 'POST', `/admin/v1/tenants/${t.body.id}/keys`, {
    name,
  });
  expect(k.status).toBe(201);
  return k.body.key;
}

// Key -> value recall: the learned answer for each key is arbitrary, so only training teaches it.
const PAIRS = Array.from({ length: 6 }, (_, i) => ({
  prompt: `k${i} =`,
  completion: ` v${(i * 5 + 3) % 8}`,
}));
const DATASET = Array.from({ length: 4 }, () => PAIRS)
  .flat()
  .map((p) => JSON.stringify(p))
  .join('\n');

type Job = { id: string; status: string; fine_tuned_model: string | null; error?: unknown };

describe('Ladder end to end, through the public API only', () => {
  it('trains LST and xLadder adapters, serves their answers, isolates tenants and meters usage once', async () => {
    const alice = await tenantWithKey('alice');
    const bob = await tenantWithKey('bob');

    // Upload: a bad file is refused with its line number, the good one accepted.
    const bad = await api<{ error: { message: string } }>(
      alice,
      'POST',
      '/v1/files?purpose=fine-tune&filename=bad.jsonl',
      '{"prompt":"a","completion":"b"}\n{"prompt":1}',
      {
        'content-type': 'application/jsonl',
      },
    );
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toContain('line 2');
    const file = await api<{ id: string }>(
      alice,
      'POST',
      '/v1/files?purpose=fine-tune&filename=recall.jsonl',
      DATASET,
      {
        'content-type': 'application/jsonl',
      },
    );
    expect(file.status).toBe(200);

    // Ladder's first request shape, every value given: the whole file (24 lines) is one optimizer
    // step, 90 of them (the openai-client test below leaves them to 'auto').
    const hyperparameters = {
      n_epochs: 90,
      batch_size: 24,
      learning_rate: 0.01,
      batch_tokens: 512,
      reduction_factor: 4,
    };
    const jobs: Job[] = [];
    for (const [type, extra] of [
      ['lst', {}],
      ['xladder', { xladder_depth: 2 }],
    ] as const) {
      const created = await api<Job>(
        alice,
        'POST',
        '/v1/fine_tuning/jobs',
        {
          model: DEFAULT_BACKBONE_NAME,
          training_file: file.body.id,
          method: { type, hyperparameters: { ...hyperparameters, ...extra } },
          suffix: `recall-${type}`,
          seed: 1,
        },
        { 'idempotency-key': `e2e-${type}` },
      );
      expect(created.status, JSON.stringify(created.body)).toBe(200);
      jobs.push(created.body);
    }

    // Wait for both jobs (the worker trains one at a time).
    const done: Job[] = [];
    for (const job of jobs) {
      let j = job;
      for (let i = 0; i < 600 && !['succeeded', 'failed', 'cancelled'].includes(j.status); i++) {
        await new Promise((r) => setTimeout(r, 500));
        j = (await api<Job>(alice, 'GET', `/v1/fine_tuning/jobs/${job.id}`)).body;
      }
      expect(j.status, `${job.id}: ${JSON.stringify(j.error)}\n${logs.slice(-20).join('\n')}`).toBe(
        'succeeded',
      );
      done.push(j);
    }

    // Each adapter answers every key with its learned value (greedy).
    let promptTokens = 0;
    let completionTokens = 0;
    for (const j of done) {
      const model = j.fine_tuned_model!;
      expect(model).toMatch(/^ft:ladder-tiny:recall-/);
      for (const p of PAIRS) {
        const out = await api<{
          choices: { text: string }[];
          usage: { prompt_tokens: number; completion_tokens: number };
        }>(alice, 'POST', '/v1/completions', { model, prompt: p.prompt, max_tokens: 4, temperature: 0 });
        expect(out.status, JSON.stringify(out.body)).toBe(200);
        expect(out.body.choices[0]!.text.trim(), `${model} ${p.prompt}`).toBe(p.completion.trim());
        promptTokens += out.body.usage.prompt_tokens;
        completionTokens += out.body.usage.completion_tokens;
      }
    }

    // Bob can neither see nor use Alice's adapters.
    const bobModels = await api<{ data: { id: string }[] }>(bob, 'GET', '/v1/models');
    expect(bobModels.body.data.map((m) => m.id)).not.toContain(done[0]!.fine_tuned_model);
    const stolen = await api(bob, 'POST', '/v1/completions', {
      model: done[0]!.fine_tuned_model,
      prompt: 'k1 =',
      max_tokens: 2,
    });
    expect(stolen.status).toBe(404);
    expect((await api(bob, 'GET', `/v1/fine_tuning/jobs/${done[0]!.id}`)).status).toBe(404);

    // Usage: training once per job, inference exactly what the responses reported.
    const usage = await api<{
      data: { model: string; prompt_tokens: number; completion_tokens: number; training_tokens: number }[];
    }>(alice, 'GET', '/v1/usage');
    const sum = (k: 'prompt_tokens' | 'completion_tokens' | 'training_tokens') =>
      usage.body.data.reduce((n, b) => n + b[k], 0);
    expect(sum('prompt_tokens')).toBe(promptTokens);
    expect(sum('completion_tokens')).toBe(completionTokens);
    // Recall lines are 6 distinct pairs x 4 copies; each job bills its dataset's tokens x epochs.
    const training = usage.body.data.filter((b) => b.training_tokens > 0);
    expect(training).toHaveLength(2);
    expect(training[0]!.training_tokens).toBe(training[1]!.training_tokens);
    expect(training[0]!.training_tokens % hyperparameters.n_epochs).toBe(0);
    const bobUsage = await api<{ data: unknown[] }>(bob, 'GET', '/v1/usage');
    expect(bobUsage.body.data).toEqual([]);
  }, 300_000);

  it("the official openai client, typed as a user writes it: upload, create with 'auto', events, checkpoints, result file, chat, stream", async () => {
    const client = new OpenAI({ baseURL: `${platform.edgeUrl}/v1`, apiKey: await tenantWithKey('carol') });
    // 16 keys, each value arbitrary: only training teaches them.
    const keys = Array.from({ length: 16 }, (_, i) => ({
      prompt: `key${i} =`,
      completion: ` v${(i * 7 + 3) % 16}`,
    }));
    const lines = Array.from({ length: 8 }, () => keys).flat();
    const file = await client.files.create({
      file: await toFile(Buffer.from(lines.map((l) => JSON.stringify(l)).join('\n')), 'recall.jsonl'),
      purpose: 'fine-tune',
    });
    expect(file.purpose).toBe('fine-tune');

    let job = await client.fineTuning.jobs.create({
      model: DEFAULT_BACKBONE_NAME,
      training_file: file.id,
      method: {
        type: 'supervised',
        supervised: {
          hyperparameters: { n_epochs: 'auto', batch_size: 'auto', learning_rate_multiplier: 'auto' },
        },
      },
      suffix: 'recall',
    });
    expect(job.object).toBe('fine_tuning.job');
    expect(job.status).toBe('validating_files');
    expect(job.hyperparameters).toEqual({
      n_epochs: 'auto',
      batch_size: 'auto',
      learning_rate_multiplier: 'auto',
    });
    expect(job.method?.type).toBe('supervised');

    const finished = ['succeeded', 'failed', 'cancelled'];
    for (let i = 0; i < 1200 && !finished.includes(job.status); i++) {
      await new Promise((r) => setTimeout(r, 500));
      job = await client.fineTuning.jobs.retrieve(job.id);
    }
    expect(job.status, `${JSON.stringify(job.error)}\n${logs.slice(-20).join('\n')}`).toBe('succeeded');
    // 'auto' resolved by the worker when the job started
    expect(job.hyperparameters.n_epochs).toEqual(expect.any(Number));
    expect(job.hyperparameters.batch_size).toEqual(expect.any(Number));
    expect(job.hyperparameters.learning_rate_multiplier).toEqual(expect.any(Number));
    expect(job.trained_tokens).toBeGreaterThan(0);
    expect(job.finished_at).toBeGreaterThanOrEqual(job.created_at);
    expect(job.error).toBeNull();

    // Events: newest first, paged by the client (has_more, after) until the first.
    const events: OpenAI.FineTuning.Jobs.FineTuningJobEvent[] = [];
    for await (const event of client.fineTuning.jobs.listEvents(job.id, { limit: 25 })) events.push(event);
    expect(events[0]?.message).toBe('The job has successfully completed');
    expect(events.at(-1)?.message).toBe(`Created fine-tuning job: ${job.id}`);
    const metrics = events.filter((e) => e.type === 'metrics');
    expect(metrics.length).toBeGreaterThan(10);
    expect(metrics[0]?.data).toMatchObject({
      step: expect.any(Number),
      train_loss: expect.any(Number),
      train_mean_token_accuracy: expect.any(Number),
      total_steps: expect.any(Number),
    });

    const checkpoints = await client.fineTuning.jobs.checkpoints.list(job.id);
    expect(checkpoints.data.length).toBeGreaterThan(0);
    const checkpoint = checkpoints.data[0];
    expect(checkpoint?.object).toBe('fine_tuning.job.checkpoint');
    expect(checkpoint?.fine_tuned_model_checkpoint).toBe(
      `${job.fine_tuned_model}:ckpt-step-${checkpoint?.step_number}`,
    );
    expect(checkpoint?.metrics.train_loss).toEqual(expect.any(Number));

    // The result file: OpenAI's columns, one row a metrics event's step.
    expect(job.result_files).toHaveLength(1);
    const resultId = job.result_files[0] ?? '';
    expect((await client.files.retrieve(resultId)).purpose).toBe('fine-tune-results');
    const csv = (await (await client.files.content(resultId)).text()).trim().split('\n');
    expect(csv[0]).toBe(
      'step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy,full_valid_loss,full_valid_mean_token_accuracy',
    );
    expect(csv.length - 1).toBe(metrics.length);

    // The adapter answers its keys (greedy); chat and a stream work on it.
    const model = job.fine_tuned_model ?? '';
    expect(model).toMatch(/^ft:ladder-tiny:recall:/);
    let right = 0;
    for (const k of keys) {
      const out = await client.completions.create({ model, prompt: k.prompt, max_tokens: 4, temperature: 0 });
      if (out.choices[0]?.text.trim() === k.completion.trim()) right++;
    }
    expect(right / keys.length, `${right} of ${keys.length} keys`).toBeGreaterThanOrEqual(0.9);
    const reply = await client.chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'hello' }],
      max_tokens: 4,
    });
    expect(reply.object).toBe('chat.completion');
    expect(reply.usage?.total_tokens).toBeGreaterThan(0);
    // A chat stream counts its prompt (the adapter learned completions, so it may stop at once)...
    const chatStream = await client.chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'hello' }],
      max_tokens: 4,
      stream: true,
      stream_options: { include_usage: true },
    });
    let chatUsage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of chatStream) chatUsage = chunk.usage ?? chatUsage;
    expect(chatUsage?.prompt_tokens).toBeGreaterThan(0);
    // ...and a streamed completion of a trained key streams its answer, with usage.
    const key = keys[0]!;
    const stream = await client.completions.create({
      model,
      prompt: key.prompt,
      max_tokens: 4,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let streamed = '';
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      streamed += chunk.choices[0]?.text ?? '';
      usage = chunk.usage ?? usage;
    }
    expect(usage?.completion_tokens).toBeGreaterThan(0);
    const greedy = await client.completions.create({
      model,
      prompt: key.prompt,
      max_tokens: 4,
      temperature: 0,
    });
    expect(streamed).toBe(greedy.choices[0]?.text);

    // A prompt over the context is the client's error: a 400 the client does not retry.
    const long = client.completions.create({ model, prompt: 'key1 = '.repeat(5000), max_tokens: 4 });
    await expect(long).rejects.toMatchObject({ status: 400, code: 'context_length_exceeded' });
  }, 600_000);
});
