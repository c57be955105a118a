import { describe, expect, it } from 'vitest';
import { buildBackboneGraph, IO } from '../../../gpu-worker/src/backbone/graph/emit.ts';
import { referenceForward } from '../../helpers/reference-llm.ts';
import { memorySource, randomWeights, runSequence, VARIANTS } from '../../helpers/tiny-backbone.ts';

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
