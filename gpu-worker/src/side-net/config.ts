import { SideNetConfig, type SideNetConfigInput } from '@ladder/schemas';
import { ropeInverseFrequencies } from '../backbone/graph/rope.ts';
import type { BackboneConfig } from '../backbone/types.ts';

/** A side-net config resolved against one backbone: every width and layer spelled out. */
export interface SideNetShape {
  config: SideNetConfig;
  d: number; // backbone width
  vocab: number;
  width: number; // d_s = d / r, a multiple of the side head dim
  heads: number; // H_s
  headDim: number; // d_s / H_s
  ffn: number; // d_ff / r
  /** Side layers 1..l: the backbone tap feeding each (undefined = a free xLadder layer). */
  layers: (number | undefined)[];
  /** Every backbone tap the side net reads: 0 (for Down_0) and the ladder taps. */
  taps: number[];
  ropeTheta: number;
  /**
   * Pruned init only (the backbone's rotary, kept): per side rotary pair i the backbone pair it
   * copies, and that pair's inverse frequency (RoPE scaling included). Random init rotates at
   * ropeTheta^(-2i / d_s,h), the side net's own spectrum.
   */
  rotary?: { pairs: number[]; invFreq: Float32Array } | undefined;
  /** Per-head RMSNorm of q and k before the rotation: pruned from a backbone that has them (Qwen3). */
  qkNorm: boolean;
  eps: number;
}

/** LST: one side layer per backbone layer, each fed by that layer's output. */
export function lstPreset(
  backbone: BackboneConfig,
  overrides: Partial<SideNetConfigInput> = {},
): SideNetConfig {
  return SideNetConfig.parse({
    taps: Array.from({ length: backbone.layers }, (_, i) => i + 1),
    side_heads: defaultSideHeads(backbone, overrides.reduction_factor ?? 8),
    ...overrides,
  });
}

/** xLadder: the top δ backbone layers feed δ side layers, then δ free side layers follow. */
export function xladderPreset(
  backbone: BackboneConfig,
  delta: number,
  overrides: Partial<SideNetConfigInput> = {},
): SideNetConfig {
  if (!(delta >= 1 && delta <= backbone.layers)) {
    throw new Error(`xladder: delta ${delta} must be in 1..${backbone.layers}`);
  }
  return SideNetConfig.parse({
    taps: Array.from({ length: delta }, (_, i) => backbone.layers - delta + 1 + i),
    free: delta,
    side_heads: defaultSideHeads(backbone, overrides.reduction_factor ?? 8),
    ...overrides,
  });
}

/**
 * Side heads: enough that a side head is no wider than the backbone's (d_s / H_s <= d_h, which
 * pruned init needs: Qwen2.5-0.5B's d_s = 896 / 8 = 112 takes 2 heads of 56), at least one.
 */
function defaultSideHeads(backbone: BackboneConfig, r: number): number {
  return Math.max(1, Math.ceil(Math.floor(backbone.hiddenSize / r) / backbone.headDim));
}

/**
 * The backbone rotary pairs a pruned side head keeps: d_s,h / 2 of the backbone's d_h / 2,
 * evenly spread (pair floor(i d_h / d_s,h)), so the side head sees the backbone's whole range of
 * wavelengths rather than only its fastest ones.
 */
function keptRotaryPairs(backboneHeadDim: number, sideHeadDim: number): number[] {
  return Array.from({ length: sideHeadDim / 2 }, (_, i) => Math.floor((i * backboneHeadDim) / sideHeadDim));
}

/**
 * d_s = d / r rounded down to a multiple of the side head dim (DESIGN.md section 2); every
 * problem is reported at once.
 */
export function resolveSideNet(backbone: BackboneConfig, input: SideNetConfigInput): SideNetShape {
  const config = SideNetConfig.parse(input);
  const problems: string[] = [];
  const r = config.reduction_factor;
  const heads = config.side_heads;
  const raw = Math.floor(backbone.hiddenSize / r);
  let headDim = Math.floor(raw / heads);
  if (headDim % 2 === 1) headDim -= 1; // rotary pairs
  if (headDim < 2)
    problems.push(`d / r = ${raw} is too narrow for ${heads} side heads (head dim ${headDim})`);
  for (const t of config.taps) {
    if (t < 1 || t > backbone.layers)
      problems.push(`tap ${t} is not a backbone layer (1..${backbone.layers})`);
  }
  const pruned = config.init === 'pruned';
  if (pruned && headDim > backbone.headDim)
    problems.push(
      `pruned init: side head dim ${headDim} exceeds the backbone's ${backbone.headDim} (use at least ${Math.ceil(raw / backbone.headDim)} side heads)`,
    );
  if (pruned && heads > backbone.heads)
    problems.push(`pruned init: ${heads} side heads exceed the backbone's ${backbone.heads}`);
  if (problems.length) throw new Error(`side-net config: ${problems.join('; ')}`);
  const width = headDim * heads;
  let rotary: SideNetShape['rotary'];
  if (pruned) {
    const pairs = keptRotaryPairs(backbone.headDim, headDim);
    const all = ropeInverseFrequencies(backbone);
    rotary = { pairs, invFreq: Float32Array.from(pairs, (j) => all[j]!) };
  }
  return {
    config,
    d: backbone.hiddenSize,
    vocab: backbone.vocabSize,
    width,
    heads,
    headDim,
    ffn: Math.max(8, Math.round(backbone.intermediateSize / r / 8) * 8),
    layers: [...config.taps, ...new Array<undefined>(config.free).fill(undefined)],
    taps: [0, ...config.taps],
    ropeTheta: backbone.ropeTheta,
    rotary,
    qkNorm: pruned && backbone.qkNorm,
    eps: backbone.rmsNormEps,
  };
}
