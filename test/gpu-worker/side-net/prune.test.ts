import { describe, expect, it } from 'vitest';
import { HF_NAMES } from '../../../gpu-worker/src/backbone/types.ts';
import {
  lstPreset,
  prunedSideNetInit,
  resolveSideNet,
  sideNetParams,
} from '../../../gpu-worker/src/side-net/index.ts';
import { memorySource, randomWeights, VARIANTS } from '../../helpers/tiny-backbone.ts';

describe('pruned side-net init', () => {
  it('copies the most important heads, neurons and residual dims of each tapped block', async () => {
    const cfg = VARIANTS['llama (GQA, llama3 rope scaling)']!; // d 32, 4 heads of 8, 2 kv heads, d_ff 48
    const weights = randomWeights(cfg, 4);
    const shape = resolveSideNet(cfg, lstPreset(cfg, { reduction_factor: 2, side_heads: 2 })); // d_s 16
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
});
