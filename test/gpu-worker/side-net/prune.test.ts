import { describe, expect, it } from 'vitest';
import { buildBackboneGraph, IO } from '../../../gpu-worker/src/backbone/graph/emit.ts';
import { type BackboneConfig, HF_NAMES } from '../../../gpu-worker/src/backbone/types.ts';
import { toModelBytes } from '../../../gpu-worker/src/graph/index.ts';
import { createSession, f32, i64, type Tensor } from '../../../gpu-worker/src/runtime/index.ts';
import {
  buildSideInferenceGraph,
  lstPreset,
  prunedSideNetInit,
  resolveSideNet,
  SIDE_IO,
  sideNetParams,
} from '../../../gpu-worker/src/side-net/index.ts';
import { emptyPast, memorySource, randomWeights, VARIANTS } from '../../helpers/tiny-backbone.ts';

/** HF's Llama 3.1 rope scaling (`_compute_llama3_parameters`), written out for the check. */
function hfInverseFrequencies(cfg: BackboneConfig): number[] {
  const out: number[] = [];
  for (let i = 0; i < cfg.headDim / 2; i++) {
    const f = 1 / cfg.ropeTheta ** ((2 * i) / cfg.headDim);
    const s = cfg.ropeScaling;
    if (!s) {
      out.push(f);
      continue;
    }
    const wavelen = (2 * Math.PI) / f;
    const smooth =
      (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    if (wavelen < s.originalMaxPositions / s.highFreqFactor) out.push(f);
    else if (wavelen > s.originalMaxPositions / s.lowFreqFactor) out.push(f / s.factor);
    else out.push((1 - smooth) * (f / s.factor) + smooth * f);
  }
  return out;
}

describe('pruned side-net init', () => {
  it('copies the most important heads, neurons and residual dims of each tapped block', async () => {
    const cfg = VARIANTS['llama (GQA, llama3 rope scaling)']!; // d 32, 4 heads of 8, 2 kv heads, d_ff 48
    const weights = randomWeights(cfg, 4);
    const shape = resolveSideNet(cfg, lstPreset(cfg, { reduction_factor: 2, side_heads: 2, init: 'pruned' })); // d_s 16
    const w = await prunedSideNetInit(shape, cfg, memorySource(weights), 1);
    for (const p of sideNetParams(shape))
      expect(w[p.name]!.length, p.name).toBe(p.shape.reduce((a, b) => a * b, 1));
    expect(w['up.weight']!.every((x) => x === 0)).toBe(true); // step 0 is still the backbone

    // Down_0 is a 0/1 projection onto 16 distinct residual dims.
    const down = w['down.0.weight']!;
    const dims: number[] = [];
    for (let k = 0; k < 16; k++) {
      const rows = Array.from({ length: 32 }, (_, r) => down[r * 16 + k]!);
      expect(rows.filter((x) => x === 1)).toHaveLength(1);
      expect(rows.filter((x) => x !== 0 && x !== 1)).toHaveLength(0);
      dims.push(rows.indexOf(1));
    }
    expect(new Set(dims).size).toBe(16);

    // Layer 0 (tap 1 = block 0): the two query heads of largest norm, computed here independently.
    const q = weights.get(HF_NAMES.layer(0).q)!; // (32, 32)
    const norms = [0, 1, 2, 3].map((h) => {
      let s = 0;
      for (let r = h * 8; r < h * 8 + 8; r++) for (let c = 0; c < 32; c++) s += q[r * 32 + c]! ** 2;
      return s;
    });
    const top = [0, 1, 2, 3]
      .sort((a, b) => norms[b]! - norms[a]!)
      .slice(0, 2)
      .sort();
    const wq = w['layers.0.wq']!; // (16, 16): [dim k, side row m]
    for (const [slot, h] of top.entries()) {
      for (let i = 0; i < 8; i++) {
        // side rows of a head: its rotary pairs in rotate-half order (all 8 rows when dh_s = dh)
        const backboneRow = h * 8 + i;
        for (const [k, dim] of dims.entries())
          expect(wq[k * 16 + slot * 8 + i]).toBe(q[backboneRow * 32 + dim]);
      }
    }
    // Norm gains are the block's, at the kept dims.
    const inNorm = weights.get(HF_NAMES.layer(0).inputNorm)!;
    expect(Array.from(w['layers.0.attn_norm']!)).toEqual(dims.map((d) => inNorm[d]));
  });

  it('keeps rotary pairs spread over the spectrum and rotates them at the backbone frequencies', async () => {
    const cfg = VARIANTS['llama (GQA, llama3 rope scaling)']!; // 4 heads of 8: 4 rotary pairs each
    const weights = randomWeights(cfg, 5);
    const shape = resolveSideNet(cfg, lstPreset(cfg, { reduction_factor: 2, side_heads: 4, init: 'pruned' })); // 4 heads of 4
    expect(shape.headDim).toBe(4);
    expect(shape.rotary!.pairs).toEqual([0, 2]); // of the backbone's pairs 0..3
    const hf = hfInverseFrequencies(cfg);
    for (const [i, j] of shape.rotary!.pairs.entries())
      expect(shape.rotary!.invFreq[i]).toBeCloseTo(hf[j]!, 6);
    const w = await prunedSideNetInit(shape, cfg, memorySource(weights), 1);
    const q = weights.get(HF_NAMES.layer(0).q)!; // (32, 32)
    const wq = w['layers.0.wq']!; // (16, 16): [dim k, side row m]
    const dims = Array.from({ length: 16 }, (_, k) =>
      Array.from({ length: 32 }, (_, r) => w['down.0.weight']![r * 16 + k]).indexOf(1),
    );
    // All 4 heads kept, in order; side head rows (pair 0, pair 2, pair 0 + 4, pair 2 + 4).
    for (let h = 0; h < 4; h++)
      for (const [m, row] of [0, 2, 4, 6].entries())
        for (const [k, dim] of dims.entries())
          expect(wq[k * 16 + h * 4 + m]).toBe(q[(h * 8 + row) * 32 + dim]);
  });

  it("fits Qwen2.5-0.5B's widths (d 896, 14 heads of 64): two side heads of 56 by default", async () => {
    const cfg: BackboneConfig = {
      ...VARIANTS['qwen2 (qkv bias, tied embeddings)']!,
      vocabSize: 16,
      hiddenSize: 896,
      heads: 14,
      kvHeads: 2,
      headDim: 64,
      intermediateSize: 256,
      layers: 1,
    };
    const shape = resolveSideNet(cfg, lstPreset(cfg, { init: 'pruned' }));
    expect([shape.heads, shape.headDim, shape.width]).toEqual([2, 56, 112]);
    const w = await prunedSideNetInit(shape, cfg, memorySource(randomWeights(cfg, 2)), 1);
    expect(w['layers.0.wq']!.length).toBe(112 * 112);
    expect(() => resolveSideNet(cfg, lstPreset(cfg, { init: 'pruned', side_heads: 1 }))).toThrow(
      /side head dim 112 exceeds the backbone's 64 \(use at least 2 side heads\)/,
    );
  });

  // Nothing pruned (r = 1, every head) and the gate held at 1 on a one-layer backbone: side
  // layer 0 is block 0 applied to the embeddings, so SideNorm(s_1) = Norm(b_1), and with Up the
  // identity the side net's logits are twice the backbone's. This holds only if the side net
  // rotates as the backbone does (llama3 scaling) and normalises q and k as it does (Qwen3).
  it.each([
    ['llama (llama3 rope scaling)', VARIANTS['llama (GQA, llama3 rope scaling)']!],
    ['qwen3 (q/k norm)', { ...VARIANTS['qwen3 (q/k norm, head_dim != d/H)']!, headDim: 8, kvHeads: 2 }],
  ])('unpruned, it reproduces the backbone block exactly: %s', async (_, variant) => {
    const cfg = { ...variant, layers: 1 };
    const weights = randomWeights(cfg, 9);
    const shape = resolveSideNet(
      cfg,
      lstPreset(cfg, { reduction_factor: 1, side_heads: cfg.heads, init: 'pruned' }),
    );
    expect(shape.qkNorm).toBe(cfg.qkNorm);
    const w = await prunedSideNetInit(shape, cfg, memorySource(weights), 1);
    w['layers.0.gate']!.fill(50); // sigmoid = 1: the side stream alone
    const up = w['up.weight']!;
    for (let i = 0; i < cfg.hiddenSize; i++) up[i * cfg.hiddenSize + i] = 1;

    const B = 1;
    const T = 7;
    const ids = [[3, 17, 5, 40, 2, 9, 33]];
    const { graph } = await buildBackboneGraph(cfg, memorySource(weights), {
      linear: { kind: 'fp32' },
      logits: 'all',
    });
    const bb = await createSession(toModelBytes(graph));
    const mask = i64(new Array(T).fill(1), [B, T]);
    const positions = i64([0, 1, 2, 3, 4, 5, 6], [B, T]);
    const out = await bb.run({
      [IO.inputIds]: i64(ids.flat(), [B, T]),
      [IO.attentionMask]: mask,
      [IO.positionIds]: positions,
      ...emptyPast(cfg, B),
    });
    await bb.dispose();
    const feeds: Record<string, Tensor> = {
      [SIDE_IO.finalHidden]: out[IO.finalHidden]!,
      [SIDE_IO.lmHead]: f32(weights.get(cfg.tieWordEmbeddings ? HF_NAMES.embed : HF_NAMES.lmHead)!, [
        cfg.vocabSize,
        cfg.hiddenSize,
      ]),
      [SIDE_IO.mask]: mask,
      [SIDE_IO.positions]: positions,
    };
    for (const t of shape.taps) feeds[SIDE_IO.tap(t)] = out[IO.tap(t)]!;
    for (const p of sideNetParams(shape)) feeds[SIDE_IO.param(p.name)] = f32(w[p.name]!, p.shape);
    shape.layers.forEach((_, j) => {
      feeds[SIDE_IO.pastKey(j)] = f32(new Float32Array(0), [B, shape.heads, 0, shape.headDim]);
      feeds[SIDE_IO.pastValue(j)] = f32(new Float32Array(0), [B, shape.heads, 0, shape.headDim]);
    });
    const side = await createSession(toModelBytes(buildSideInferenceGraph(shape)));
    const got = (await side.run(feeds))[SIDE_IO.logits]!.data as Float32Array; // last position
    await side.dispose();
    const V = cfg.vocabSize;
    const want = (out[IO.logits]!.data as Float32Array).subarray((T - 1) * V, T * V);
    const scale = Math.max(...Array.from(want, Math.abs));
    expect(Math.max(...Array.from(got, (v, i) => Math.abs(v - 2 * want[i]!))) / scale).toBeLessThan(1e-5);
  });
});
