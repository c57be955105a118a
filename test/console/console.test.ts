// The web console in a real headless Chromium (Debian's chromium, driven by playwright-core),
// against the platform as `npm start` runs it: the edge in workerd serving the console as static
// assets on the API's origin, and a real GPU worker training and serving on the CPU.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_BACKBONE_NAME, type Platform, ROOT, startPlatform } from '../../scripts/platform.ts';

const CHROMIUM = '/usr/bin/chromium';
const SHOTS = join(ROOT, 'test-output', 'console');
const root = mkdtempSync(join(tmpdir(), 'ladder-console-'));
const logs: string[] = [];
let platform: Platform;
let browser: BrowserContext;
let page: Page;
let key: string;

// Key -> value recall, a tiny file: 6 pairs x 4 copies, one optimizer step an epoch.
const PAIRS = Array.from({ length: 6 }, (_, i) => ({
  prompt: `k${i} =`,
  completion: ` v${(i * 5 + 3) % 8}`,
}));
const DATASET = Array.from({ length: 4 }, () => PAIRS)
  .flat()
  .map((p) => JSON.stringify(p))
  .join('\n');
const BAD_FILE = [
  '{"prompt":"a =","completion":" b"}',
  '{"prompt":1,"completion":" b"}',
  '{"prompt":"c =","completion":" d"}',
  '{"prompt":"e =",',
].join('\n');

async function api<T>(method: string, path: string, body?: unknown, token = key): Promise<T> {
  const res = await fetch(`${platform.edgeUrl}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text) as T;
}

const shot = (name: string) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does it on CI)`);
  mkdirSync(SHOTS, { recursive: true });
  platform = await startPlatform({
    dataDir: join(root, 'platform'),
    edgePort: 0,
    workerPort: 0,
    backboneName: DEFAULT_BACKBONE_NAME,
    workerEnv: { LADDER_CHECKPOINT_EVERY_STEPS: '10', LADDER_INTRA_OP_THREADS: '1' },
    log: (line) => logs.push(line),
  });
  const tenant = await api<{ id: string }>(
    'POST',
    '/admin/v1/tenants',
    { name: 'console' },
    platform.adminToken,
  );
  key = (
    await api<{ key: string }>(
      'POST',
      `/admin/v1/tenants/${tenant.id}/keys`,
      { name: 'ui' },
      platform.adminToken,
    )
  ).key;
  browser = await chromium.launchPersistentContext(join(root, 'chromium-profile'), {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 900 },
  });
  page = browser.pages()[0] ?? (await browser.newPage());
}, 300_000);

afterAll(async () => {
  await browser?.close();
  await platform?.stop();
  rmSync(root, { recursive: true, force: true });
});

/** Every form control has a label (or an aria-label) and nothing is wider than the viewport. */
async function checkAccessibleAndFits() {
  // Page-side code as strings: this project's tsconfig has no DOM types.
  const unlabeled = await page.evaluate(`[...document.querySelectorAll('input, select, textarea')]
    .filter((el) => !el.labels?.length && !el.getAttribute('aria-label'))
    .map((el) => el.outerHTML)`);
  expect(unlabeled).toEqual([]);
  const overflow = await page.evaluate('document.documentElement.scrollWidth - window.innerWidth');
  expect(overflow).toBeLessThanOrEqual(0);
}

const points = async (chart: string) => Number((await page.getAttribute(chart, 'data-points')) ?? 0);

describe('the web console in headless Chromium', () => {
  it('signs in, shows a bad upload line by line, trains with a live curve, chats, compares, and charts usage as the API counts it', async () => {
    // Sign in: the key goes to sessionStorage, never into the URL.
    await page.goto(`${platform.edgeUrl}/`);
    await page.getByLabel('API key').fill(key);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Fine-tuning jobs' }).waitFor();
    expect(page.url()).not.toContain(key);
    expect(await page.evaluate("sessionStorage.getItem('ladder.apiKey')")).toBe(key);
    expect(await page.evaluate('localStorage.length')).toBe(0);

    // A bad file: each refused line carries its error, naming the field; good lines carry none.
    await page.goto(`${platform.edgeUrl}/#/files`);
    await page.getByLabel(/JSONL file/).setInputFiles({
      name: 'bad.jsonl',
      mimeType: 'application/jsonl',
      buffer: Buffer.from(BAD_FILE),
    });
    await page.getByRole('button', { name: 'Upload' }).click();
    await page.locator('tr[data-line="2"].bad').waitFor();
    expect(await page.textContent('tr[data-line="2"] .line-error')).toMatch(/prompt/);
    expect(await page.textContent('tr[data-line="4"] .line-error')).not.toBe('');
    expect(await page.textContent('tr[data-line="1"] .line-error')).toBe('');
    expect(await page.textContent('tr[data-line="3"] .line-error')).toBe('');
    expect(await page.getByRole('alert').first().textContent()).toContain('2 invalid line(s) of 4');
    await checkAccessibleAndFits();
    await shot('upload-errors');

    await page.getByLabel(/JSONL file/).setInputFiles({
      name: 'recall.jsonl',
      mimeType: 'application/jsonl',
      buffer: Buffer.from(DATASET),
    });
    await page.getByRole('button', { name: 'Upload' }).click();
    await page.getByRole('status').filter({ hasText: '24 completion lines' }).waitFor();
    const files = await api<{ data: { id: string; filename: string }[] }>('GET', '/v1/files');
    const fileId = files.data.find((f) => f.filename === 'recall.jsonl')!.id;

    // A job from the form; its page's loss curve gains points while it trains.
    // The backbone is offered once the worker's heartbeat has reached the registry.
    for (let i = 0; i < 120; i++) {
      const models = await api<{ data: { id: string }[] }>('GET', '/v1/models');
      if (models.data.some((m) => m.id === DEFAULT_BACKBONE_NAME)) break;
      if (i === 119)
        throw new Error(`no live worker serves ${DEFAULT_BACKBONE_NAME}:\n${logs.slice(-30).join('\n')}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    await page.goto(`${platform.edgeUrl}/#/jobs`);
    await page.getByLabel('Training file').selectOption(fileId);
    await page.getByLabel('Backbone').selectOption(DEFAULT_BACKBONE_NAME);
    await page.getByLabel('Method').selectOption('lst');
    await page.getByLabel('Suffix').fill('ui-a');
    await page.getByLabel('Epochs').fill('60');
    await page.getByLabel('Batch size').fill('24');
    await page.getByLabel('Learning rate').fill('0.01');
    await checkAccessibleAndFits();
    await page.getByRole('button', { name: 'Create job' }).click();
    await page.waitForURL(/#\/jobs\/ftjob-/);
    const jobA = decodeURIComponent(page.url().split('#/jobs/')[1]!);
    // The second adapter for the comparison, straight through the API (the worker trains in turn).
    const jobB = await api<{ id: string }>('POST', '/v1/fine_tuning/jobs', {
      model: DEFAULT_BACKBONE_NAME,
      training_file: fileId,
      method: {
        type: 'xladder',
        xladder: { hyperparameters: { n_epochs: 20, batch_size: 24, learning_rate: 0.01 } },
      },
      suffix: 'ui-b',
      seed: 2,
    });

    // Sampled while it trains: the curve must grow on the page, not arrive all at once at the end.
    const seen: { points: number; status: string }[] = [];
    const deadline = Date.now() + 240_000;
    for (;;) {
      const status = (await page.textContent('#job-status').catch(() => null)) ?? '';
      seen.push({ points: await points('#loss-chart'), status });
      if (['succeeded', 'failed', 'cancelled'].includes(status) || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(seen.at(-1)!.status, logs.slice(-20).join('\n')).toBe('succeeded');
    const whileRunning = [
      ...new Set(seen.filter((s) => s.status === 'running' && s.points > 0).map((s) => s.points)),
    ];
    expect(whileRunning.length, JSON.stringify(seen)).toBeGreaterThanOrEqual(2);
    // Every measured step is on the curve, and the resolved hyperparameters and checkpoints show.
    // 60 steps, each measured (the worker sends every step's metrics below 500 steps). The status
    // can show a frame before the chart has drawn the last events of the same chunk.
    await expect.poll(() => points('#loss-chart'), { timeout: 10_000 }).toBe(60);
    expect(await page.textContent('#hyperparameters')).toContain('60');
    await page.locator('#checkpoints tbody tr').first().waitFor();
    await page.locator('#event-log li', { hasText: /succeeded|completed/i }).waitFor();
    await checkAccessibleAndFits();
    await shot('job');
    await page.setViewportSize({ width: 390, height: 844 });
    await checkAccessibleAndFits();
    await shot('job-phone');
    await page.setViewportSize({ width: 1280, height: 900 });

    type Job = { status: string; fine_tuned_model: string | null; error: unknown };
    let b = await api<Job>('GET', `/v1/fine_tuning/jobs/${jobB.id}`);
    for (let i = 0; i < 600 && !['succeeded', 'failed', 'cancelled'].includes(b.status); i++) {
      await new Promise((r) => setTimeout(r, 500));
      b = await api<Job>('GET', `/v1/fine_tuning/jobs/${jobB.id}`);
    }
    expect(b.status, `${JSON.stringify(b.error)}\n${logs.slice(-20).join('\n')}`).toBe('succeeded');
    const modelA = (await api<Job>('GET', `/v1/fine_tuning/jobs/${jobA}`)).fine_tuned_model!;
    const modelB = b.fine_tuned_model!;

    // Chat: the streamed answer is the adapter's greedy answer, and the turn's usage shows.
    type Chat = { choices: { message: { content: string } }[]; usage: { prompt_tokens: number } };
    const greedy = (model: string, content: string, max_tokens: number) =>
      api<Chat>('POST', '/v1/chat/completions', {
        model,
        messages: [{ role: 'user', content }],
        max_tokens,
        temperature: 0,
      });
    await page.goto(`${platform.edgeUrl}/#/adapters/${encodeURIComponent(modelA)}`);
    await page.getByLabel('Message').fill('k1 =');
    await page.getByLabel('Message').press('Enter');
    await page.locator('#chat-usage').waitFor();
    const expected = await greedy(modelA, 'k1 =', 32);
    expect(await page.textContent('#chat-log li.assistant .content')).toBe(
      expected.choices[0]!.message.content,
    );
    expect(await page.textContent('#chat-usage')).toContain(`${expected.usage.prompt_tokens} prompt`);

    // Compare: one prompt, both adapters side by side, each answer and its cost.
    await page.getByLabel(modelB).check();
    await page.getByLabel('Prompt').fill('k3 =');
    await page.getByRole('button', { name: 'Compare' }).click();
    await page.locator('#compare-total').waitFor();
    const prices = await api<{ data: Record<string, { prompt_per_1k: number; completion_per_1k: number }> }>(
      'GET',
      '/v1/usage/prices',
    );
    let total = 0;
    for (const model of [modelA, modelB]) {
      const card = page.locator(`article.answer[data-model="${model}"]`);
      const want = await api<Chat & { usage: { completion_tokens: number } }>(
        'POST',
        '/v1/chat/completions',
        {
          model,
          messages: [{ role: 'user', content: 'k3 =' }],
          max_tokens: 32,
          temperature: 0,
        },
      );
      expect(await card.locator('.content').textContent()).toBe(want.choices[0]!.message.content);
      const p = prices.data[DEFAULT_BACKBONE_NAME]!;
      const cost =
        (want.usage.prompt_tokens * p.prompt_per_1k + want.usage.completion_tokens * p.completion_per_1k) /
        1000;
      expect(await card.locator('.cost').textContent()).toBe(`$${cost.toFixed(6)}`);
      total += cost;
    }
    expect(await page.textContent('#compare-total')).toContain(`$${total.toFixed(6)}`);
    await checkAccessibleAndFits();
    await shot('compare');

    // Usage: the charts' plotted totals are the API's numbers.
    await page.goto(`${platform.edgeUrl}/#/usage`);
    await page.locator('#usage-cost[data-sum]').waitFor();
    const usage = await api<{
      data: { prompt_tokens: number; completion_tokens: number; training_tokens: number; model: string }[];
      total_cost_usd: number;
    }>('GET', '/v1/usage');
    const tokens = usage.data.reduce(
      (n, u) => n + u.prompt_tokens + u.completion_tokens + u.training_tokens,
      0,
    );
    expect(usage.data.map((u) => u.model)).toEqual(expect.arrayContaining([modelA, modelB]));
    expect(Number(await page.getAttribute('#usage-tokens', 'data-sum'))).toBe(tokens);
    expect(Number(await page.getAttribute('#usage-cost', 'data-sum'))).toBeCloseTo(usage.total_cost_usd, 6);
    expect(await page.textContent('#usage-total')).toBe(`$${usage.total_cost_usd.toFixed(6)}`);
    await checkAccessibleAndFits();
    await shot('usage');

    // Admin: the workers from the registry, the tenants and their keys.
    await page.goto(`${platform.edgeUrl}/#/admin`);
    await page.getByLabel('Admin token').fill(platform.adminToken);
    await page.getByRole('button', { name: 'Sign in' }).click();
    const worker = page.locator('#workers tbody tr').first();
    await worker.waitFor();
    expect(await worker.textContent()).toContain(DEFAULT_BACKBONE_NAME);
    expect(await worker.locator('.age').textContent()).toMatch(/^\d+\.\d s$/);
    await page
      .locator('#tenants tr', { hasText: 'console' })
      .getByRole('button', { name: 'Show keys' })
      .click();
    await page.locator('table.keys tbody tr').first().waitFor();
    expect(await page.locator('table.keys').textContent()).toContain(key.slice(0, 14));
    expect(await page.content()).not.toContain(key);
    await checkAccessibleAndFits();
    await shot('admin');
  }, 600_000);
});
