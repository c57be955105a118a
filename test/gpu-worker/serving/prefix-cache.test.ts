import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SAMPLING_DEFAULTS } from '../../../gpu-worker/src/backbone/generate/index.ts';
import {
  ComputeGate,
  type GenerationJob,
  Scheduler,
  ServingModel,
  workerMetrics,
} from '../../../gpu-worker/src/serving/index.ts';
import { backbonePrefill } from '../../../gpu-worker/src/serving/prefill.ts';
import {
  type CacheScope,
  PREFIX_BLOCK,
  PrefixCache,
  type PromptActs,
} from '../../../gpu-worker/src/serving/prefix-cache.ts';
import { writeTinyCheckpoint } from '../../helpers/tiny-checkpoint.ts';

const root = mkdtempSync(join(tmpdir(), 'ladder-prefix-'));
let model: ServingModel;

beforeAll(async () => {
  const ckpt = await writeTinyCheckpoint(join(root, 'backbone'), { architecture: 'llama', seed: 7 });
  model = await ServingModel.open({ backboneDir: ckpt.dir, cacheDir: join(root, 'cache') });
}, 120_000);

afterAll(async () => {
  await model?.dispose();
  rmSync(root, { recursive: true, force: true });
});

const SYSTEM =
  'You are a helpful assistant. Answer in one short sentence, and say so when you do not know. '.repeat(2);
const encode = (text: string) => model.tokenizer.encode(text);

/** Largest |a - b| over the largest |b|: 0 when equal. */
function relDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let scale = 1e-30;
  let diff = 0;
  for (let i = 0; i < b.length; i++) {
    scale = Math.max(scale, Math.abs(b[i]!));
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
  }
  return diff / scale;
}

function expectSameActs(got: PromptActs, want: PromptActs): void {
  expect(got.bb.len).toBe(want.bb.len);
  expect(relDiff(got.lastLogits, want.lastLogits)).toBeLessThan(1e-5);
  expect(relDiff(got.finalHidden, want.finalHidden)).toBeLessThan(1e-5);
  for (const [t, x] of want.taps) expect(relDiff(got.taps.get(t)!, x), `tap ${t}`).toBeLessThan(1e-5);
  want.bb.keys.forEach((k, l) => {
    expect(relDiff(got.bb.keys[l]!, k), `key ${l}`).toBeLessThan(1e-5);
    expect(relDiff(got.bb.values[l]!, want.bb.values[l]!), `value ${l}`).toBeLessThan(1e-5);
  });
}

function scheduler(prefixCacheBytes: number) {
  const metrics = workerMetrics();
  const s = new Scheduler(model, new ComputeGate(), metrics, {
    maxBatch: 8,
    maxBatchTokens: 4096,
    maxQueue: 64,
    maxQueuePerTenant: 64,
    batchWaitMs: 0,
    prefixCacheBytes,
  });
  const run = (prompt: number[], scope: Partial<GenerationJob> & { tenant: string }) =>
    s.submit({
      requestId: `r${Math.random()}`,
      prompt,
      params: { ...SAMPLING_DEFAULTS, maxTokens: 6 },
      seed: 0,
      adapter: null,
      ...scope,
    });
  return {
    s,
    metrics,
    run,
    hitTokens: () => metrics.prefixHitTokens.get(),
    hits: () => metrics.prefixHits.get(),
  };
}

describe('prefix cache by blocks', () => {
  it('reuses the KV of a shared system prompt, and the results equal an uncached prefill', async () => {
    const a = encode(`${SYSTEM}Question: what is the cat on?`);
    const b = encode(`${SYSTEM}Question: where is the dog and why?`);
    const c = encode('Hello World, a prompt of its own');
    let common = 0;
    while (a[common] === b[common]) common++;
    expect(common).toBeGreaterThan(4 * PREFIX_BLOCK);

    const [refB, refC] = await backbonePrefill(model, [{ prompt: b }, { prompt: c }]);
    const cache = new PrefixCache(64 << 20, model.kv);
    const scope: CacheScope = { tenant: 't1' };
    const [actsA] = await backbonePrefill(model, [{ prompt: a }]);
    cache.store(PrefixCache.keys(a, scope), actsA!);

    const found = cache.lookup(PrefixCache.keys(b, scope), b.length);
    expect(found.kind).toBe('prefix');
    expect(found.tokens).toBe(Math.floor(common / PREFIX_BLOCK) * PREFIX_BLOCK);
    if (found.kind !== 'prefix') return;
    // Alone, and in one run with an uncached prompt of another length (padding on both sides).
    const [aloneB] = await backbonePrefill(model, [{ prompt: b, cached: found }]);
    expectSameActs(aloneB!, refB!);
    const [mixedC, mixedB] = await backbonePrefill(model, [{ prompt: c }, { prompt: b, cached: found }]);
    expectSameActs(mixedB!, refB!);
    expectSameActs(mixedC!, refC!);

    // The whole prompt seen before comes back whole, equal to what was stored.
    const again = cache.lookup(PrefixCache.keys(a, scope), a.length);
    expect(again.kind).toBe('whole');
    if (again.kind === 'whole') expectSameActs(again.acts, actsA!);
  });

  it('serves the same tokens with the cache as without, the second prompt reusing the shared blocks', async () => {
    const a = encode(`${SYSTEM}Question: what is the cat on?`);
    const b = encode(`${SYSTEM}Question: where is the dog and why?`);
    const off = scheduler(0);
    const on = scheduler(64 << 20);
    try {
      const want = [await off.run(a, { tenant: 't1' }), await off.run(b, { tenant: 't1' })];
      const before = model.counters.backboneRows;
      const got = [await on.run(a, { tenant: 't1' }), await on.run(b, { tenant: 't1' })];
      expect(got.map((o) => o.tokens)).toEqual(want.map((o) => o.tokens));
      expect(on.hitTokens()).toBeGreaterThanOrEqual(4 * PREFIX_BLOCK);
      expect(model.counters.backboneRows).toBeGreaterThan(before);
      const whole = await on.run(b, { tenant: 't1' });
      expect(whole.tokens).toEqual(want[1]!.tokens);
      expect(on.hits()).toBe(1);
    } finally {
      await off.s.close();
      await on.s.close();
    }
  });

  it("never lets one tenant hit another's entries unless both opted in, and keeps hit counts off the open /metrics", async () => {
    const p = encode(`${SYSTEM}Question: is this prompt secret?`);
    const q = encode(`${SYSTEM}Question: is this one shared?`);
    const { s, metrics, run, hitTokens, hits } = scheduler(64 << 20);
    try {
      const prefills = () => model.counters.prefillRuns;
      await run(p, { tenant: 'tenant-a' });
      let n = prefills();
      await run(p, { tenant: 'tenant-b' }); // same prompt, another tenant: a full prefill
      expect(prefills()).toBe(n + 1);
      expect([hitTokens(), hits()]).toEqual([0, 0]);
      await run(p, { tenant: 'tenant-b', sharePrefixCache: true }); // B opted in, A did not
      expect([hitTokens(), hits()]).toEqual([0, 0]);
      await run(p, { tenant: 'tenant-a', salt: 'x' }); // A's own prompt under another salt
      expect([hitTokens(), hits()]).toEqual([0, 0]);
      n = prefills();
      await run(p, { tenant: 'tenant-a' }); // A again: its own entry, no backbone
      expect(prefills()).toBe(n);
      expect(hits()).toBe(1);

      await run(q, { tenant: 'tenant-c', sharePrefixCache: true });
      await run(q, { tenant: 'tenant-d', sharePrefixCache: true }); // both opted in: shared
      expect(hits()).toBe(2);
      await run(q, { tenant: 'tenant-e' });
      expect(hits()).toBe(2);

      const open = metrics.registry.render();
      expect(open).not.toContain('ladder_prefix_cache');
      expect(open).toContain('ladder_prompt_tokens_total');
      expect(metrics.registry.render({ includePrivate: true })).toContain('ladder_prefix_cache_hits_total 2');
    } finally {
      await s.close();
    }
  });
});
