import type { PutAdapterInput, TensorInput } from '../../adapters/index.ts';
import { rng } from './gradcheck.ts';

/** A fixed fake backbone fingerprint (64 hex) and a different one. */
export const BACKBONE = { name: 'tiny-test-backbone', fingerprint: 'a'.repeat(64) };
export const OTHER_BACKBONE = { name: 'other-backbone', fingerprint: 'b'.repeat(64) };

/** Deterministic pseudo-random floats, so fixtures are reproducible. */
export { rng };

export interface SideNetShape {
  /** Backbone width d. */
  d: number;
  /** Backbone MLP width d_ff. */
  dff: number;
  layers: number;
  r: number;
  dtype: 'F32' | 'F16';
}

/** Tiny: a few KB, for unit tests. */
export const TINY: SideNetShape = { d: 32, dff: 64, layers: 2, r: 4, dtype: 'F32' };
/** The r=8 side net of a 0.5B-class backbone (Qwen2.5-0.5B: d=896, d_ff=4864, 24 layers), fp16: ~17 MB. */
export const HALF_B_R8: SideNetShape = { d: 896, dff: 4864, layers: 24, r: 8, dtype: 'F16' };

/**
 * The tensors of an LST side net (DESIGN.md section 2): per layer a Down projection from the
 * tap, a gate, a Llama-style block at width d/r; then SideNorm and the zero-initialised Up.
 */
export function sideNetTensors(shape: SideNetShape, seed = 1): Record<string, TensorInput> {
  const { d, dff, layers, r, dtype } = shape;
  const ds = d / r;
  const fs = dff / r;
  const next = rng(seed);
  const make = (dims: number[], fill?: number): TensorInput => {
    const n = dims.reduce((a, b) => a * b, 1);
    if (dtype === 'F32') {
      const data = new Float32Array(n);
      for (let i = 0; i < n; i++) data[i] = fill ?? (next() - 0.5) * 0.1;
      return { dtype, shape: dims, data };
    }
    // fp16 bits of small random values: sign, exponent 5..13, random mantissa.
    const data = new Uint16Array(n);
    for (let i = 0; i < n; i++)
      data[i] =
        fill === 0
          ? 0
          : (((next() * 2) | 0) << 15) | ((5 + ((next() * 9) | 0)) << 10) | ((next() * 1024) | 0);
    return { dtype, shape: dims, data };
  };
  const t: Record<string, TensorInput> = {};
  for (let j = 0; j < layers; j++) {
    const p = `side.layers.${j}`;
    t[`${p}.down.weight`] = make([ds, d]); // (d_s, d)
    t[`${p}.down.bias`] = make([ds]);
    t[`${p}.gate.z`] = make([ds], 0); // z init 0 => g = 0.5
    t[`${p}.attn_norm.weight`] = make([ds], 1);
    for (const w of ['q', 'k', 'v', 'o']) t[`${p}.attn.${w}_proj.weight`] = make([ds, ds]);
    t[`${p}.mlp_norm.weight`] = make([ds], 1);
    t[`${p}.mlp.gate_proj.weight`] = make([fs, ds]);
    t[`${p}.mlp.up_proj.weight`] = make([fs, ds]);
    t[`${p}.mlp.down_proj.weight`] = make([ds, fs]);
  }
  t['side.norm.weight'] = make([ds], 1);
  t['side.up.weight'] = make([d, ds], 0); // zero-initialised Up: step 0 = the backbone
  return t;
}

export function adapterInput(
  adapterId: string,
  version = 1,
  opts: { seed?: number; shape?: SideNetShape; backbone?: typeof BACKBONE } = {},
): PutAdapterInput {
  const shape = opts.shape ?? TINY;
  return {
    adapterId,
    version,
    name: `${adapterId} v${version}`,
    backbone: opts.backbone ?? BACKBONE,
    sideNet: {
      reduction_factor: shape.r,
      taps: Array.from({ length: shape.layers }, (_, i) => i),
      side_heads: 2,
    },
    training: {
      job_id: `job-${adapterId}-${version}`,
      steps: 100,
      tokens: 51_200,
      final_losses: { train: 1.25 },
    },
    weights: sideNetTensors(shape, opts.seed ?? version),
  };
}
