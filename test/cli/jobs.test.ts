import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from './run-cli.ts';
import { BACKBONE, STAND_IN_KEY, StandInEdge, trainingScript } from './stand-in-edge.ts';

describe('ladder jobs', () => {
  let edge: StandInEdge;
  let env: Record<string, string>;
  let dir: string;
  let fileId: string;

  beforeAll(async () => {
    edge = await StandInEdge.start();
    env = { LADDER_BASE_URL: edge.url, LADDER_API_KEY: STAND_IN_KEY };
    dir = mkdtempSync(join(tmpdir(), 'ladder-jobs-'));
    writeFileSync(
      join(dir, 'train.jsonl'),
      `${JSON.stringify({ prompt: 'Capital of France?', completion: ' Paris' })}\n`,
    );
    fileId = (await runCli(['files', 'upload', 'train.jsonl'], { env, cwd: dir })).stdout.trim();
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
    return edge.close();
  });
  beforeEach(() => {
    edge.script = trainingScript(4);
    edge.eventsPerStream = Number.POSITIVE_INFINITY;
  });

  /** A job created through the CLI, its id. */
  async function createJob(...extra: string[]): Promise<string> {
    const run = await runCli(['jobs', 'create', '--file', fileId, ...extra], { env });
    expect(run.code).toBe(0);
    return run.stdout.trim();
  }

  it("creates a job with an Idempotency-Key, the chosen method and hyperparameters, on the platform's backbone", async () => {
    const run = await runCli(
      [
        'jobs',
        'create',
        '--file',
        'train.jsonl',
        '--method',
        'xladder',
        '--epochs',
        '2',
        '--lr',
        '0.01',
        '--suffix',
        'capitals',
      ],
      { env, cwd: dir },
    );
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^ftjob-\d+\n$/);
    expect(run.stderr).toMatch(/uploaded train\.jsonl as file-\d+/);
    const create = edge.requestsTo('POST', '/v1/fine_tuning/jobs').at(-1)!;
    expect(create.headers.get('idempotency-key')).toMatch(/^[0-9a-f-]{36}$/);
    const body = JSON.parse(create.body);
    expect(body).toMatchObject({
      model: BACKBONE,
      method: { type: 'xladder', xladder: { hyperparameters: { n_epochs: 2, learning_rate: 0.01 } } },
      suffix: 'capitals',
    });
    // with no options: OpenAI's default shape, every hyperparameter left to the platform
    expect((await runCli(['jobs', 'create', '--file', fileId], { env })).code).toBe(0);
    expect(JSON.parse(edge.requestsTo('POST', '/v1/fine_tuning/jobs').at(-1)!.body).method).toEqual({
      type: 'supervised',
      supervised: { hyperparameters: {} },
    });
    const auto = await runCli(
      ['jobs', 'create', '--file', fileId, '--epochs', 'auto', '--batch-size', '16'],
      {
        env,
      },
    );
    expect(auto.code).toBe(0);
    expect(JSON.parse(edge.requestsTo('POST', '/v1/fine_tuning/jobs').at(-1)!.body).method).toEqual({
      type: 'supervised',
      supervised: { hyperparameters: { n_epochs: 'auto', batch_size: 16 } },
    });
    expect(body.training_file).toMatch(/^file-\d+$/);
  });

  it('refuses bad options before uploading or creating anything', async () => {
    const before = edge.requests.length;
    for (const args of [
      ['--method', 'lora'],
      ['--epochs', '0'],
      ['--epochs', 'many'],
      ['--batch-size', '1000'],
      ['--lr', 'fast'],
      ['--suffix', 'has space'],
    ]) {
      const run = await runCli(['jobs', 'create', '--file', 'train.jsonl', ...args], { env, cwd: dir });
      expect(run.code).toBe(2);
      expect(run.stderr).toMatch(/^error: .+\n\(see: ladder jobs create --help\)\n$/);
    }
    expect(edge.requests.length).toBe(before);
  });

  it('watch (not a terminal): one plain line per event, the model name on stdout, exit 0', async () => {
    const id = await createJob('--suffix', 'demo');
    const run = await runCli(['jobs', 'watch', id], { env });
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(`ft:${BACKBONE}:demo:adp-${id}\n`);
    const lines = run.stderr.trimEnd().split('\n');
    expect(lines.some((l) => l.endsWith('Created fine-tuning job'))).toBe(true);
    expect(lines.filter((l) => /step \d+\/\d+ \(/.test(l)).map((l) => l.replace(/^\S+ {2}/, ''))).toEqual([
      'step 1/4 (25%)  loss 2.0000  1.5k tok/s  eta 9s',
      'step 2/4 (50%)  loss 1.7500  1.5k tok/s  eta 6s',
      'step 3/4 (75%)  loss 1.5000  1.5k tok/s  eta 3s',
      'step 4/4 (100%)  loss 1.2500  1.5k tok/s  eta 0s',
    ]);
    expect(lines.some((l) => l.endsWith('Checkpoint created at step 2'))).toBe(true);
    expect(run.stderr).not.toContain('\r');
    expect(lines.at(-1)).toBe(
      `job ${id} succeeded (4,096 training tokens); chat with it: ladder chat ${run.stdout.trim()}`,
    );
  });

  it('watch on a terminal: the progress line is redrawn in place and other lines print above it', async () => {
    const id = await createJob();
    const run = await runCli(['jobs', 'watch', id], { env, tty: true, columns: 100 });
    expect(run.code).toBe(0);
    const redraws = run.stderr.split('\r').filter((s) => s.includes('tok/s'));
    expect(redraws.length).toBeGreaterThanOrEqual(4);
    expect(run.stderr).toContain(
      '\r[███████████████░░░░░░░░░░░░░░░] 2/4  50%  loss 1.7500  1.5k tok/s  eta 6s\x1b[K',
    );
    expect(run.stderr).toContain('] 4/4  100%  loss 1.2500');
    // The checkpoint line clears the bar, prints, and the bar comes back below it.
    const erased = run.stderr.replaceAll('\x1b[K', '<erase>');
    expect(erased).toMatch(/\r<erase>\S+ {2}Checkpoint created at step 2\n\[█+░+\] 2\/4/);
    // Status lines never reach the terminal's width (a wrapped line cannot be redrawn).
    for (const drawn of redraws)
      expect(drawn.split('\n')[0]!.replaceAll('\x1b[K', '').length).toBeLessThan(100);

    // A narrow terminal drops the bar and keeps the figures.
    const narrow = await runCli(['jobs', 'watch', id], { env, tty: true, columns: 50 });
    expect(narrow.stderr).toContain('\rstep 3/4 (75%)  loss 1.5000  1.5k tok/s  eta 3s\x1b[K');
  });

  it('watch reopens the stream after the last event when the edge closes it before the job ends', async () => {
    edge.eventsPerStream = 3;
    const id = await createJob();
    const run = await runCli(['jobs', 'watch', id], { env });
    expect(run.code).toBe(0);
    const streams = edge.requestsTo('GET', `/v1/fine_tuning/jobs/${id}/events`);
    expect(streams.length).toBe(3);
    expect(streams.map((r) => [r.query.get('stream'), r.query.get('after')])).toEqual([
      ['true', null],
      ['true', `${id}-event-2`],
      ['true', `${id}-event-5`],
    ]);
    expect(run.stderr.match(/step \d\/4/g)).toEqual(['step 1/4', 'step 2/4', 'step 3/4', 'step 4/4']);
  });

  it('watch reconnects after a dropped connection and misses nothing', async () => {
    const id = await createJob();
    edge.cutNextStream = true;
    const run = await runCli(['jobs', 'watch', id], { env });
    expect(run.code).toBe(0);
    expect(run.stderr).toMatch(/event stream broke \(.+\); reconnecting\n/);
    const streams = edge.requestsTo('GET', `/v1/fine_tuning/jobs/${id}/events`);
    expect(streams.map((r) => r.query.get('after'))).toEqual([null, `${id}-event-0`]);
    expect(run.stderr.match(/Created fine-tuning job/g)).toHaveLength(1);
    expect(run.stderr.match(/step \d\/4/g)).toEqual(['step 1/4', 'step 2/4', 'step 3/4', 'step 4/4']);
  });

  it('watch exits 1 with the error of a failed job, and 3 for a cancelled one', async () => {
    edge.script = trainingScript(2, {
      status: 'failed',
      error: { code: 'training_failed', message: 'loss is NaN' },
    });
    const failed = await createJob();
    const run = await runCli(['jobs', 'watch', failed], { env });
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(/ {2}error: loss is NaN\n/);
    expect(run.stderr).toContain(`error: job ${failed} failed: loss is NaN (training_failed)\n`);

    edge.script = trainingScript(2, { status: 'cancelled' });
    const cancelled = await runCli(['jobs', 'watch', await createJob()], { env });
    expect(cancelled.code).toBe(3);
    expect(cancelled.stderr).toMatch(/job ftjob-\d+ was cancelled\n$/);
  });

  it('create --watch follows the new job to its end', async () => {
    const run = await runCli(['jobs', 'create', '--file', fileId, '--watch'], { env });
    expect(run.code).toBe(0);
    const [jobId, model] = run.stdout.trim().split('\n');
    expect(model).toBe(`ft:${BACKBONE}:adapter:adp-${jobId}`);
  });

  it('list, get, pause (refused before it runs) and cancel', async () => {
    const id = await createJob('--suffix', 'listed');
    const list = await runCli(['jobs', 'list'], { env });
    expect(list.code).toBe(0);
    expect(list.stdout.split('\n')[0]).toMatch(
      /^ID\s+STATUS\s+METHOD\s+MODEL\s+FINE-TUNED MODEL\s+CREATED \(UTC\)$/,
    );
    expect(list.stdout.split('\n')[1]).toMatch(
      new RegExp(`^${id}\\s+validating_files\\s+supervised\\s+${BACKBONE}\\s+-\\s+2025-`),
    );

    const get = await runCli(['jobs', 'get', id], { env });
    expect(get.stdout).toMatch(/^status\s+validating_files$/m);
    expect(get.stdout).toMatch(
      /^method\s+supervised \(epochs auto, batch size auto, learning rate multiplier auto\)$/m,
    );

    const pause = await runCli(['jobs', 'pause', id], { env });
    expect(pause.code).toBe(1);
    expect(pause.stderr).toContain('(job_not_pausable)');

    const cancel = await runCli(['jobs', 'cancel', id], { env });
    expect(cancel).toMatchObject({ code: 0, stdout: `${id} cancelled\n` });
    const again = await runCli(['jobs', 'cancel', id], { env });
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(`error: Job ${id} has already cancelled. (job_not_cancellable)\n`);

    const missing = await runCli(['jobs', 'get', 'ftjob-nope'], { env });
    expect(missing.stderr).toBe(
      "error: No fine_tuning_job found with id 'ftjob-nope' (fine_tuning_job_not_found)\n",
    );
  });
});
