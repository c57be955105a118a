import { Rng } from '../util/rng.ts';
import type { SideNetShape } from './config.ts';

/** One trainable tensor of the side network, with its initialisation. */
export interface SideParam {
  name: string;
  shape: number[];
  init: { kind: 'normal'; std: number } | { kind: 'zeros' } | { kind: 'ones' };
}

/**
 * The trainable parameters (DESIGN.md section 2), weights stored (in, out):
 *   down.{k}.weight (d, d_s), down.{k}.bias (d_s)      for every tap k (0 = embeddings)
 *   layers.{j}.gate (d_s | 1)                           ladder-fed layers only, zero: g = 0.5
 *   layers.{j}.{attn_norm, wq, wk, wv, wo, mlp_norm, w_gate, w_up, w_down}
 *   layers.{j}.{q_norm, k_norm} (dh_s)                  when the shape has qkNorm
 *   side_norm (d_s), up.weight (d_s, d) zero: step 0 reproduces the backbone
 */
export function sideNetParams(s: SideNetShape): SideParam[] {
  const { d, width, heads, headDim, ffn } = s;
  const fanIn = (n: number) => ({ kind: 'normal', std: 1 / Math.sqrt(n) }) as const;
  const params: SideParam[] = [];
  for (const t of s.taps) {
    params.push(
      { name: `down.${t}.weight`, shape: [d, width], init: fanIn(d) },
      { name: `down.${t}.bias`, shape: [width], init: { kind: 'zeros' } },
    );
  }
  s.layers.forEach((tap, j) => {
    const p = `layers.${j}`;
    if (tap !== undefined) {
      const gateShape = s.config.gate === 'vector' ? [width] : [1];
      params.push({ name: `${p}.gate`, shape: gateShape, init: { kind: 'zeros' } });
    }
    const ones = { kind: 'ones' } as const;
    const resid = { kind: 'normal', std: 1 / Math.sqrt(width) / Math.sqrt(2 * s.layers.length) } as const;
    params.push(
      { name: `${p}.attn_norm`, shape: [width], init: { kind: 'ones' } },
      { name: `${p}.wq`, shape: [width, heads * headDim], init: fanIn(width) },
      { name: `${p}.wk`, shape: [width, heads * headDim], init: fanIn(width) },
      { name: `${p}.wv`, shape: [width, heads * headDim], init: fanIn(width) },
      { name: `${p}.wo`, shape: [heads * headDim, width], init: resid },
      ...(s.qkNorm
        ? [
            { name: `${p}.q_norm`, shape: [headDim], init: ones },
            { name: `${p}.k_norm`, shape: [headDim], init: ones },
          ]
        : []),
      { name: `${p}.mlp_norm`, shape: [width], init: { kind: 'ones' } },
      { name: `${p}.w_gate`, shape: [width, ffn], init: fanIn(width) },
      { name: `${p}.w_up`, shape: [width, ffn], init: fanIn(width) },
      {
        name: `${p}.w_down`,
        shape: [ffn, width],
        init: { kind: 'normal', std: 1 / Math.sqrt(ffn) / Math.sqrt(2 * s.layers.length) },
      },
    );
  });
  params.push(
    { name: 'side_norm', shape: [width], init: { kind: 'ones' } },
    { name: 'up.weight', shape: [width, d], init: { kind: 'zeros' } },
  );
  return params;
}

/** Fresh values for every parameter from one seed. */
export function initSideNet(s: SideNetShape, seed: number): Record<string, Float32Array> {
  const rng = new Rng(seed);
  const out: Record<string, Float32Array> = {};
  for (const p of sideNetParams(s)) {
    const data = new Float32Array(p.shape.reduce((a, b) => a * b, 1));
    if (p.init.kind === 'ones') data.fill(1);
    else if (p.init.kind === 'normal')
      for (let i = 0; i < data.length; i++) data[i] = rng.normal() * p.init.std;
    out[p.name] = data;
  }
  return out;
}
