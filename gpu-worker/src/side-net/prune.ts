import { type BackboneConfig, HF_NAMES, type TensorSource } from '../backbone/types.ts';
import type { SideNetShape } from './config.ts';
import { initSideNet } from './params.ts';

/**
 * Side blocks initialised from structurally pruned backbone blocks (DESIGN.md section 2; LST,
 * https://arxiv.org/abs/2206.06522, prunes with Fisher information — here weight magnitude):
 *
 *   residual dims   keep the d_s most important of d: Σ over the tapped blocks' input columns |W|
 *   heads           keep the H_s query heads of largest ||W_q,h||, each with its k/v head, and of
 *                   each head d_s,h/2 rotary pairs (j, j + d_h/2), spread over the spectrum
 *                   (shape.rotary.pairs), which the side net then rotates at the backbone's
 *                   frequencies (shape.rotary.invFreq); q/k norm gains (Qwen3) at the same rows
 *   MLP neurons     keep the d_ff/r of largest ||gate_n|| ||up_n|| ||down_n||
 *
 * Side layer j copies the block its tap reads (free layers cycle over the tapped blocks). Down_t
 * starts as the projection onto the kept dims; Up stays zero, so step 0 is still the backbone.
 */
export async function prunedSideNetInit(
  shape: SideNetShape,
  backbone: BackboneConfig,
  source: TensorSource,
  seed: number,
): Promise<Record<string, Float32Array>> {
  const w = initSideNet(shape, seed);
  const { d, width, heads: Hs, headDim: dhs, ffn: Fs } = shape;
  const { heads: H, kvHeads: Hkv, headDim: dh, intermediateSize: F } = backbone;
  if (dhs > dh) throw new Error(`pruned init: side head dim ${dhs} exceeds the backbone's ${dh}`);
  if (Hs > H) throw new Error(`pruned init: ${Hs} side heads exceed the backbone's ${H}`);
  const pairs = shape.rotary?.pairs;
  if (!pairs) throw new Error("pruned init: the shape has no rotary pairs (resolve it with init 'pruned')");
  if (shape.qkNorm !== backbone.qkNorm)
    throw new Error('pruned init: the shape and the backbone disagree on q/k norms');
  const blocks = [...new Set(shape.config.taps)].map((t) => t - 1); // HF layer index of each tapped block

  // Residual dims by the input-column magnitude of every tapped block's projections.
  const importance = new Float64Array(d);
  for (const b of blocks) {
    const n = HF_NAMES.layer(b);
    for (const [name, rows] of [
      [n.q, H * dh],
      [n.k, Hkv * dh],
      [n.v, Hkv * dh],
      [n.gate, F],
      [n.up, F],
    ] as const) {
      const m = await source.read(name); // (rows, d)
      for (let r = 0; r < rows; r++) for (let c = 0; c < d; c++) importance[c]! += Math.abs(m[r * d + c]!);
    }
  }
  const dims = topK(importance, width); // d_s residual dims, ascending

  for (const t of shape.taps) {
    const down = w[`down.${t}.weight`]!; // (d, d_s): projection onto the kept dims
    down.fill(0);
    dims.forEach((dim, k) => {
      down[dim * width + k] = 1;
    });
  }
  const finalNorm = await source.read(HF_NAMES.finalNorm);
  w.side_norm = Float32Array.from(dims, (dim) => finalNorm[dim]!);

  for (const [j, tap] of shape.layers.entries()) {
    const b = tap !== undefined ? tap - 1 : blocks[j % blocks.length]!;
    const n = HF_NAMES.layer(b);
    const p = `layers.${j}`;
    const [q, k, v, o] = await Promise.all([n.q, n.k, n.v, n.o].map((x) => source.read(x)));
    const headNorm = Float64Array.from({ length: H }, (_, h) => {
      let s = 0;
      for (let r = h * dh; r < (h + 1) * dh; r++) for (let c = 0; c < d; c++) s += q![r * d + c]! ** 2;
      return s;
    });
    const keptHeads = topK(headNorm, Hs);
    // Rows of the kept heads: per head the pairs (j, j + dh/2), j in pairs, in rotate-half order.
    const inHead = [...pairs, ...pairs.map((j) => dh / 2 + j)];
    const headRows = (h: number) => inHead.map((r) => h * dh + r);
    const qRows = keptHeads.flatMap(headRows);
    const kvRows = keptHeads.flatMap((h) => headRows(Math.floor(h / (H / Hkv))));
    w[`${p}.wq`] = gatherIn(q!, d, qRows, dims); // (d_s, H_s*dh_s)
    w[`${p}.wk`] = gatherIn(k!, d, kvRows, dims);
    w[`${p}.wv`] = gatherIn(v!, d, kvRows, dims);
    w[`${p}.wo`] = gatherOut(o!, H * dh, dims, qRows); // (H_s*dh_s, d_s)
    if (shape.qkNorm) {
      const [qNorm, kNorm] = await Promise.all([n.qNorm, n.kNorm].map((x) => source.read(x))); // (dh)
      w[`${p}.q_norm`] = Float32Array.from(inHead, (r) => qNorm![r]!);
      w[`${p}.k_norm`] = Float32Array.from(inHead, (r) => kNorm![r]!);
    }

    const [gate, up, down] = await Promise.all([n.gate, n.up, n.down].map((x) => source.read(x)));
    const neuron = Float64Array.from({ length: F }, (_, f) => {
      let g = 0;
      let u = 0;
      let dn = 0;
      for (let c = 0; c < d; c++) {
        g += gate![f * d + c]! ** 2;
        u += up![f * d + c]! ** 2;
        dn += down![c * F + f]! ** 2;
      }
      return Math.sqrt(g * u * dn);
    });
    const keptNeurons = topK(neuron, Fs);
    w[`${p}.w_gate`] = gatherIn(gate!, d, keptNeurons, dims); // (d_s, d_ff/r)
    w[`${p}.w_up`] = gatherIn(up!, d, keptNeurons, dims);
    w[`${p}.w_down`] = gatherOut(down!, F, dims, keptNeurons); // (d_ff/r, d_s)
    const [inNorm, postNorm] = await Promise.all([n.inputNorm, n.postAttnNorm].map((x) => source.read(x)));
    w[`${p}.attn_norm`] = Float32Array.from(dims, (dim) => inNorm![dim]!);
    w[`${p}.mlp_norm`] = Float32Array.from(dims, (dim) => postNorm![dim]!);
  }
  return w;
}

/** Indices of the k largest scores, ascending. */
function topK(scores: Float64Array, k: number): number[] {
  return Array.from(scores.keys())
    .sort((a, b) => scores[b]! - scores[a]! || a - b)
    .slice(0, k)
    .sort((a, b) => a - b);
}

/** From an HF weight (rows, cols) y = x W^T: the (in, out) side matrix [cols_k, rows_m]. */
function gatherIn(
  m: Float32Array,
  cols: number,
  rows: readonly number[],
  ins: readonly number[],
): Float32Array {
  const out = new Float32Array(ins.length * rows.length);
  ins.forEach((c, kIdx) => {
    rows.forEach((r, mIdx) => {
      out[kIdx * rows.length + mIdx] = m[r * cols + c]!;
    });
  });
  return out;
}

/** From an HF weight (outRows, inCols): the (in, out) side matrix [inCols_m, outRows_k]. */
function gatherOut(
  m: Float32Array,
  cols: number,
  outs: readonly number[],
  ins: readonly number[],
): Float32Array {
  const out = new Float32Array(ins.length * outs.length);
  ins.forEach((c, mIdx) => {
    outs.forEach((r, kIdx) => {
      out[mIdx * outs.length + kIdx] = m[r * cols + c]!;
    });
  });
  return out;
}
