// The platform as `npm start` runs it (the edge in workerd via wrangler, a real GPU worker process
// with a generated backbone, the filesystem adapter store), driven only through the public HTTP API.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

    const hyperparameters = { n_epochs: 90, learning_rate: 0.01, batch_tokens: 512, reduction_factor: 4 };
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
});
