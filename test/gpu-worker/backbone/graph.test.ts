import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildBackboneGraph, IO } from '../../../gpu-worker/src/backbone/graph/emit.ts';
import { toModelBytes } from '../../../gpu-worker/src/graph/index.ts';
import { createSession, f32, i64, type Tensor, toScalar } from '../../../gpu-worker/src/runtime/index.ts';
import { HALF_MAX, toHalfBits } from '../../../gpu-worker/src/util/half.ts';
import { rng } from '../../helpers/gradcheck.ts';
import { referenceForward } from '../../helpers/reference-llm.ts';
import {
  emptyPast,
  memorySource,
  randomWeights,
  runSequence,
  VARIANTS,
} from '../../helpers/tiny-backbone.ts';

function maxRelError(got: Float32Array, want: Float64Array[]): number {
  const flat = want.flatMap((r) => Array.from(r));
  const scale = Math.max(...flat.map(Math.abs));
  let err = 0;
  for (let i = 0; i < flat.length; i++) err = Math.max(err, Math.abs(got[i]! - flat[i]!) / scale);
  return err;
}

describe('the fp32 ONNX backbone matches an independent float64 reference', () => {
  const cases = Object.entries(VARIANTS).flatMap(([name, cfg]) =>
    [true, false].map(
      (fused) => [`${name}, ${fused ? 'fused kernels' : 'primitive ops'}`, cfg, fused] as const,
    ),
  );
  it.each(cases)('%s: every tap, the final state and the logits within 1e-4', async (_, cfg, fused) => {
    const weights = randomWeights(cfg, 11);
    const { graph } = await buildBackboneGraph(cfg, memorySource(weights), {
      linear: { kind: 'fp32' },
      logits: 'all',
      fused,
    });
    const ops = new Set(graph.nodes.map((n) => n.op.type));
    expect(ops.has('SkipSimplifiedLayerNormalization')).toBe(fused);
    expect(ops.has('RotaryEmbedding')).toBe(fused);
    const ids = [3, 17, 42, 5, 60, 0, 9, 33, 21];
    const T = ids.length;
    const out = await runSequence(graph, cfg, ids);
    const ref = referenceForward(cfg, weights, ids);
    for (let l = 0; l <= cfg.layers; l++) {
      expect(maxRelError(out[IO.tap(l)]!.data as Float32Array, ref.taps[l]!), `tap ${l}`).toBeLessThanOrEqual(
        1e-4,
      );
    }
    expect(maxRelError(out[IO.finalHidden]!.data as Float32Array, ref.finalHidden)).toBeLessThanOrEqual(1e-4);
    expect(maxRelError(out[IO.logits]!.data as Float32Array, ref.logits)).toBeLessThanOrEqual(1e-4);
    expect(out[IO.presentKey(1)]!.dims).toEqual([1, cfg.kvHeads, T, cfg.headDim]);
  });
});

interface Kernel {
  cat: string;
  name: string;
  ts: number;
  dur: number;
  args?: { output_type_shape?: Record<string, number[]>[] };
}

/** The kernels of each run of a profiled session, in run order. */
function kernelsByRun(dir: string): Kernel[][] {
  const file = readdirSync(dir).find((f) => f.endsWith('.json'))!;
  const events = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Kernel[];
  const runs = events.filter((e) => e.name === 'model_run').sort((a, b) => a.ts - b.ts);
  return runs.map((r) =>
    events
      .filter((e) => e.cat === 'Node' && e.ts >= r.ts && e.ts <= r.ts + r.dur)
      .sort((a, b) => a.ts - b.ts),
  );
}

describe('attention over blocks of query rows for a long prompt only', () => {
  it.each(Object.entries(VARIANTS))(
    '%s: a prefill past scoreBlock runs the blocks, a decoding step one softmax, both as the reference',
    async (_, cfg) => {
      const weights = randomWeights(cfg, 11);
      // 9 prompt rows x 9 keys x 4 heads = 324 scores > 64: blocks; a step's 1 x 10 x 4 = 40: one softmax.
      const { graph } = await buildBackboneGraph(cfg, memorySource(weights), {
        linear: { kind: 'fp32' },
        logits: 'all',
        scoreBlock: 64,
      });
      const dir = mkdtempSync(join(tmpdir(), 'ladder-long-prompt-'));
      try {
        const session = await createSession(toModelBytes(graph), { profile: join(dir, 'run') });
        const ids = [3, 17, 42, 5, 60, 0, 9, 33, 21, 14];
        const T = ids.length - 1;
        const prompt = await session.run({
          [IO.inputIds]: i64(ids.slice(0, T), [1, T]),
          [IO.attentionMask]: i64(new Array(T).fill(1), [1, T]),
          [IO.positionIds]: i64(
            ids.slice(0, T).map((_, t) => t),
            [1, T],
          ),
          ...emptyPast(cfg, 1),
        });
        const past: Record<string, Tensor> = {};
        for (let l = 0; l < cfg.layers; l++) {
          past[IO.pastKey(l)] = prompt[IO.presentKey(l)]!;
          past[IO.pastValue(l)] = prompt[IO.presentValue(l)]!;
        }
        const step = await session.run({
          [IO.inputIds]: i64([ids[T]!], [1, 1]),
          [IO.attentionMask]: i64(new Array(T + 1).fill(1), [1, T + 1]),
          [IO.positionIds]: i64([T], [1, 1]),
          ...past,
        });
        await session.dispose();
        const ref = referenceForward(cfg, weights, ids);
        const logits = prompt[IO.logits]!.data as Float32Array;
        expect(maxRelError(logits, ref.logits.slice(0, T))).toBeLessThanOrEqual(1e-4);
        expect(maxRelError(step[IO.logits]!.data as Float32Array, ref.logits.slice(T))).toBeLessThanOrEqual(
          1e-4,
        );
        const [prefill, decode] = kernelsByRun(dir);
        const blocks = (ks: Kernel[]) => ks.filter((k) => k.name.includes('/LongPrompt/then/')).length;
        const plain = (ks: Kernel[]) => ks.filter((k) => k.name.includes('/LongPrompt/else/')).length;
        expect(blocks(prefill!)).toBeGreaterThan(0);
        expect(plain(prefill!)).toBe(0);
        expect(blocks(decode!)).toBe(0);
        expect(plain(decode!)).toBeGreaterThan(0);
        // Neither scores nor a bias of (T, T) rows ever exist at prefill: blocks of 2 rows only.
        const square = prefill!.flatMap((k) =>
          (k.args?.output_type_shape ?? [])
            .map((o) => Object.values(o)[0]!)
            .filter((dims) => dims.length >= 2 && dims.at(-1) === T && dims.at(-2) === T)
            .map((dims) => `${k.name} [${dims.join(', ')}]`),
        );
        expect(square).toEqual([]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});

describe('the 4-bit backbone', () => {
  it.each([0, 4] as const)(
    'logits stay within a stated bound of fp32 (accuracy_level %i)',
    async (accuracyLevel) => {
      const cfg = { ...VARIANTS['llama (GQA, llama3 rope scaling)']!, hiddenSize: 64, intermediateSize: 128 };
      const weights = randomWeights(cfg, 3);
      const ids = [3, 17, 42, 5, 60, 0, 9, 33, 21];
      const run = async (linear: Parameters<typeof buildBackboneGraph>[2] extends infer O ? O : never) => {
        const { graph, report } = await buildBackboneGraph(cfg, memorySource(weights), {
          ...linear,
          logits: 'all',
        });
        const out = await runSequence(graph, cfg, ids);
        return { logits: out[IO.logits]!.data as Float32Array, report };
      };
      const fp32 = await run({ linear: { kind: 'fp32' } });
      const int4 = await run({ linear: { kind: 'quantized', bits: 4, blockSize: 32, accuracyLevel } });
      // Every linear layer is reported with its relative quantization error (uniform weights: ~4-6%).
      expect(int4.report).toHaveLength(cfg.layers * 7);
      for (const r of int4.report) expect(r.relError).toBeGreaterThan(0.01);
      for (const r of int4.report) expect(r.relError).toBeLessThan(0.1);
      const scale = Math.max(...Array.from(fp32.logits, Math.abs));
      const err = Math.max(...Array.from(int4.logits, (v, i) => Math.abs(v - fp32.logits[i]!))) / scale;
      let dot = 0;
      let n1 = 0;
      let n2 = 0;
      for (let i = 0; i < fp32.logits.length; i++) {
        dot += fp32.logits[i]! * int4.logits[i]!;
        n1 += fp32.logits[i]! ** 2;
        n2 += int4.logits[i]! ** 2;
      }
      const cosine = dot / Math.sqrt(n1 * n2);
      // Random uniform weights are the worst case for 4-bit (no outlier structure to exploit): the
      // bound is max |Δlogit| <= 30% of max |logit| and cosine >= 0.97; real checkpoints do far better.
      expect(err).toBeLessThan(0.3);
      expect(cosine).toBeGreaterThan(0.97);
      expect(err).toBeGreaterThan(0); // the quantized graph really differs
    },
  );
});

describe('8-bit embedding and LM head', () => {
  it.each(['llama (GQA, llama3 rope scaling)', 'qwen2 (qkv bias, tied embeddings)'])(
    '%s: logits close to full precision',
    async (variant) => {
      const cfg = VARIANTS[variant]!;
      const weights = randomWeights(cfg, 8);
      const ids = [3, 17, 42, 5, 60, 0, 9];
      const run = async (embeddings: 'fp32' | 'int8') => {
        const { graph, report } = await buildBackboneGraph(cfg, memorySource(weights), {
          linear: { kind: 'fp32' },
          logits: 'all',
          embeddings,
        });
        const out = await runSequence(graph, cfg, ids);
        return {
          logits: out[IO.logits]!.data as Float32Array,
          report,
          ops: graph.nodes.map((n) => n.op.type),
        };
      };
      const full = await run('fp32');
      const int8 = await run('int8');
      expect(int8.ops).toContain('GatherBlockQuantized');
      expect(int8.ops).toContain('MatMulNBits');
      // One table for a tied pair, two otherwise; 8-bit blockwise error is well under 1%.
      expect(int8.report.length).toBe(cfg.tieWordEmbeddings ? 1 : 2);
      for (const r of int8.report) expect(r.relError).toBeLessThan(0.01);
      const scale = Math.max(...Array.from(full.logits, Math.abs));
      const err = Math.max(...Array.from(int8.logits, (v, i) => Math.abs(v - full.logits[i]!))) / scale;
      expect(err).toBeLessThan(0.03);
      expect(err).toBeGreaterThan(0);
    },
  );
});

describe('float16 taps (the side nets training pass)', () => {
  it('are the float32 taps rounded to nearest even, clamped past 65504, with tap_absmax their largest |b_t|', async () => {
    const cfg = VARIANTS['llama (GQA, llama3 rope scaling)']!;
    const weights = randomWeights(cfg, 5);
    const T = 6;
    const d = cfg.hiddenSize;
    // Embedding rows fed as they are, two of them far past float16's range.
    const r = rng(2);
    const embeds = Float32Array.from({ length: T * d }, () => r() * 2 - 1);
    embeds[3] = 1e5;
    embeds[2 * d + 7] = -3e5;
    const run = async (tapDtype: 'float32' | 'float16') => {
      const { graph } = await buildBackboneGraph(cfg, memorySource(weights), {
        linear: { kind: 'fp32' },
        embeddings: 'input',
        logits: 'none',
        kvCache: false,
        blocks: 'always',
        tapDtype,
      });
      const session = await createSession(toModelBytes(graph));
      const out = await session.run({
        [IO.inputsEmbeds]: f32(embeds, [1, T, d]),
        [IO.attentionMask]: i64(new Array(T).fill(1), [1, T]),
        [IO.positionIds]: i64(
          Array.from({ length: T }, (_, t) => t),
          [1, T],
        ),
      });
      await session.dispose();
      return out;
    };
    const wide = await run('float32');
    const half = await run('float16');
    expect(wide[IO.tapAbsMax]).toBeUndefined();
    let absMax = 0;
    for (let l = 0; l <= cfg.layers; l++) {
      const x = wide[IO.tap(l)]!.data as Float32Array;
      const got = half[IO.tap(l)]!;
      expect(got.type).toBe('float16');
      const want = Array.from(x, (v) => toHalfBits(Math.min(HALF_MAX, Math.max(-HALF_MAX, v))));
      expect(Array.from(got.data as Uint16Array), `tap ${l}`).toEqual(want);
      absMax = Math.max(absMax, ...Array.from(x, Math.abs));
    }
    expect(absMax).toBeGreaterThan(HALF_MAX);
    expect(toScalar(half[IO.tapAbsMax]!)).toBe(absMax);
    expect(half[IO.finalHidden]!.data).toEqual(wide[IO.finalHidden]!.data);
  });

  it("runs each tap's branch (|b| max, clip, cast) before the next layer, so b_t in float32 dies with it", async () => {
    const cfg = VARIANTS['llama (GQA, llama3 rope scaling)']!;
    const { graph } = await buildBackboneGraph(cfg, memorySource(randomWeights(cfg, 6)), {
      linear: { kind: 'fp32' },
      embeddings: 'input',
      logits: 'none',
      kvCache: false,
      blocks: 'always',
      tapDtype: 'float16',
    });
    const dir = mkdtempSync(join(tmpdir(), 'ladder-tap-order-'));
    try {
      const session = await createSession(toModelBytes(graph), { profile: join(dir, 'run') });
      const T = 5;
      const r = rng(3);
      await session.run({
        [IO.inputsEmbeds]: f32(
          Array.from({ length: T * cfg.hiddenSize }, () => r() - 0.5),
          [1, T, cfg.hiddenSize],
        ),
        [IO.attentionMask]: i64(new Array(T).fill(1), [1, T]),
        [IO.positionIds]: i64(
          Array.from({ length: T }, (_, t) => t),
          [1, T],
        ),
      });
      await session.dispose(); // writes the profile
      const order = kernelsByRun(dir)[0]!.map((k) => k.name);
      const at = (pred: (name: string) => boolean) => order.flatMap((n, i) => (pred(n) ? [i] : []));
      for (let t = 0; t < cfg.layers; t++) {
        // The output's Identity only hands the float16 tap out; the branch is everything else.
        const branch = at((n) => n.startsWith(`/tap.${t}/`) && !n.includes('/outputs/'));
        const kinds = new Set(
          branch.map((i) => order[i]!.split('/')[2]!.replace(/_\d+.*|_kernel_time$/, '')),
        );
        expect([...kinds].sort(), `tap ${t}`).toEqual(
          expect.arrayContaining(['Abs', 'Cast', 'Clip', 'ReduceMax']),
        );
        const nextLayer = at((n) => n.startsWith(`/layers.${t}/`));
        expect(Math.max(...branch), `tap ${t}`).toBeLessThan(Math.min(...nextLayer));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
