// `npm start`'s supervision of the GPU worker: the platform as it runs (scripts/platform.ts: the
// edge in workerd, the real worker process), the worker SIGKILLed mid-job.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_BACKBONE_NAME, type Platform, startPlatform } from '../../scripts/platform.ts';
import { supervise } from '../../scripts/supervise.ts';

const root = mkdtempSync(join(tmpdir(), 'ladder-supervise-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const until = async <T>(what: string, f: () => Promise<T | undefined>, ms = 120_000): Promise<T> => {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
};

describe('supervise', () => {
  it('restarts a crashing process with growing delays and gives up past the restart limit', async () => {
    const starts: number[] = [];
    const s = supervise(
      'crasher',
      () => {
        starts.push(Date.now());
        return spawn(process.execPath, ['-e', 'process.exit(3)'], { stdio: 'ignore' });
      },
      { initialDelayMs: 50, maxDelayMs: 1000, maxRestartsInWindow: 3, windowMs: 60_000, log: () => {} },
    );
    const why = await s.gaveUp;
    expect(why).toMatch(/crasher exited 4 times/);
    expect(s.restarts()).toBe(3);
    const gaps = starts.slice(1).map((t, i) => t - starts[i]!);
    expect(gaps[0]).toBeGreaterThanOrEqual(50);
    expect(gaps[2]).toBeGreaterThanOrEqual(200); // 50, 100, 200: doubled each time
  });
});

describe('npm start platform', () => {
  let platform: Platform | undefined;
  afterAll(async () => platform?.stop());

  it('brings a SIGKILLed worker back, and the job it was training resumes from its checkpoint and succeeds', async () => {
    const logs: string[] = [];
    platform = await startPlatform({
      dataDir: root,
      edgePort: 0,
      workerPort: 0,
      backboneName: DEFAULT_BACKBONE_NAME,
      workerEnv: { LADDER_CHECKPOINT_EVERY_STEPS: '3', LADDER_INTRA_OP_THREADS: '1' },
      restart: { initialDelayMs: 200 },
      log: (l) => logs.push(l),
    });
    const p = platform;
    let crashed = false;
    void p.exited.then(() => {
      crashed = true;
    });
    const api = async <T>(key: string, method: string, path: string, body?: unknown, type?: string) => {
      const res = await fetch(`${p.edgeUrl}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${key}`,
          ...(body === undefined ? {} : { 'content-type': type ?? 'application/json' }),
        },
        body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      });
      return { status: res.status, body: (await res.json()) as T };
    };
    const admin = p.adminToken;
    const tenant = (await api<{ id: string }>(admin, 'POST', '/admin/v1/tenants', { name: 'sup' })).body.id;
    const key = (await api<{ key: string }>(admin, 'POST', `/admin/v1/tenants/${tenant}/keys`, { name: 'k' }))
      .body.key;
    const lines = Array.from({ length: 16 }, (_, i) =>
      JSON.stringify({ prompt: `k${i} =`, completion: ` v${i % 5}` }),
    );
    const file = await api<{ id: string }>(
      key,
      'POST',
      '/v1/files?purpose=fine-tune&filename=t.jsonl',
      lines.join('\n'),
      'application/jsonl',
    );
    expect(file.status).toBe(200);
    const job = await api<{ id: string }>(key, 'POST', '/v1/fine_tuning/jobs', {
      model: DEFAULT_BACKBONE_NAME,
      training_file: file.body.id,
      method: { type: 'lst', hyperparameters: { n_epochs: 40, batch_size: 4, learning_rate: 0.01 } },
    });
    expect(job.status, JSON.stringify(job.body)).toBe(200);
    type Page = { data: { step_number: number }[] };
    await until('a checkpoint', async () => {
      const c = await api<Page>(key, 'GET', `/v1/fine_tuning/jobs/${job.body.id}/checkpoints`);
      return c.body.data.length ? true : undefined;
    });
    const running = (await api<{ status: string }>(key, 'GET', `/v1/fine_tuning/jobs/${job.body.id}`)).body;
    expect(running.status).toBe('running');
    const before = p.worker.pid()!;
    process.kill(before, 'SIGKILL');
    await until('the restarted worker', async () =>
      p.worker.restarts() === 1 && (await fetch(`${p.workerUrl}/readyz`).catch(() => undefined))?.ok
        ? true
        : undefined,
    );
    expect(p.worker.pid()).not.toBe(before);
    type Job = { status: string; error: unknown };
    const done = await until(
      'the job to end',
      async () => {
        const j = (await api<Job>(key, 'GET', `/v1/fine_tuning/jobs/${job.body.id}`)).body;
        return ['succeeded', 'failed', 'cancelled'].includes(j.status) ? j : undefined;
      },
      240_000,
    );
    expect(done.status, `${JSON.stringify(done.error)}\n${logs.slice(-30).join('\n')}`).toBe('succeeded');
    // The new process trained only the steps after the checkpoint it resumed from.
    const metrics = await (await fetch(`${p.workerUrl}/metrics`)).text();
    const steps = Number(/^ladder_training_steps_total (\d+)/m.exec(metrics)?.[1]);
    const total =
      (
        await api<{ hyperparameters: { n_epochs: number } }>(
          key,
          'GET',
          `/v1/fine_tuning/jobs/${job.body.id}`,
        )
      ).body.hyperparameters.n_epochs * 4;
    expect(steps).toBeGreaterThan(0);
    expect(steps).toBeLessThan(total);
    expect(crashed).toBe(false);
    expect(logs.join('\n')).toMatch(/gpu-worker exited \(SIGKILL\); restarting it/);
  }, 420_000);
});
