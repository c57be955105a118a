import { cachedAttention, forwardBias } from '../backbone/graph/attention.ts';
import {
  add,
  DEFAULT_SCORE_BLOCK,
  dropout,
  type Graph,
  halfInputLinear,
  linear,
  mul,
  recompute,
  rmsNorm,
  rotaryTables,
  sigmoid,
  sub,
  swiglu,
  type Value,
} from '../graph/index.ts';
import type { SideNetShape } from './config.ts';

/** What the side network reads from one backbone pass, plus its own cache when decoding. */
export interface SideInputs {
  /** Backbone taps b_t (B, T, d) for every t in shape.taps: float32, or float16 (training). */
  taps: ReadonlyMap<number, Value>;
  /** Norm(b_L) (B, T, d): the backbone's final normed state. */
  finalHidden: Value;
  /** (B, P+T) int64, 1 = token: covers the cached positions too when decoding. */
  mask: Value;
  positions: Value; // (B, T) int64
  past?: { keys: Value[]; values: Value[] } | undefined; // per side layer (B, H_s, P, dh_s)
  /** Training only: the dropout seed (int64 scalar); no dropout without it. */
  dropoutSeed?: Value | undefined;
  /** Score elements per block of query rows (chunkedAttention); 0: full attention. Default DEFAULT_SCORE_BLOCK. */
  scoreBlock?: number | undefined;
  /** Blocks only for calls with more scores than scoreBlock (decoding: see CachedAttentionShape.longOnly). */
  longOnly?: boolean | undefined;
  /**
   * Training: each side block's backward runs the block again from its input instead of keeping
   * its activations (`recompute`). Not with a past (decoding keeps its cache).
   */
  recompute?: boolean | undefined;
}

export interface SideOutputs {
  out: Value; // (B, T, d) = Norm(b_L) + Up(SideNorm(s_l)), fed to the frozen LM head
  present: { keys: Value[]; values: Value[] };
}

/**
 * The side network of DESIGN.md section 2 (LST, https://arxiv.org/abs/2206.06522; xLadder):
 *
 *   s_0 = Down_0(b_0)
 *   side layer j:  ladder-fed from tap t:  g = sigmoid(z_j);  h = g s_{j-1} + (1 - g) Down_t(b_t)
 *                  free (xLadder):         h = s_{j-1}
 *                  s_j = SideBlock_j(h)     (RMSNorm ─ causal attention ─ + ; RMSNorm ─ SwiGLU ─ +)
 *   out = Norm(b_L) + Up(SideNorm(s_l))     Up zero-initialised: step 0 is the backbone
 *
 * The backward of a training step never enters the backbone: the taps are inputs.
 */
export function sideForward(
  g: Graph,
  s: SideNetShape,
  params: Record<string, Value>,
  inp: SideInputs,
): SideOutputs {
  const p = (name: string) => {
    const v = params[name];
    if (!v) throw new Error(`side net: no parameter '${name}'`);
    return v;
  };
  const tap = (t: number) => {
    const v = inp.taps.get(t);
    if (!v) throw new Error(`side net: tap ${t} is not an input`);
    return v;
  };
  // Each dropout site draws its own mask: the step's seed offset by the site's number, fixed per
  // site so that a recomputed block draws the masks its forward drew.
  const drop = (x: Value, name: string, number: number) => {
    if (!inp.dropoutSeed || s.config.dropout === 0) return x;
    const site = add(inp.dropoutSeed, g.scalar(1_000_003 * number, 'int64'), `${name}_seed`);
    return dropout(x, s.config.dropout, site, { name });
  };

  // A tap's down-projection; float16 taps (training) are widened inside the product only.
  const down = (t: number) => {
    const b = tap(t);
    return (b.dtype === 'float16' ? halfInputLinear : linear)(b, p(`down.${t}.weight`), p(`down.${t}.bias`), {
      name: `down.${t}`,
    });
  };

  return g.scope('side', () => {
    let x = down(0); // (B, T, d_s)
    const { cos, sin } = rotaryTables(inp.positions, s.headDim, s.ropeTheta, { invFreq: s.rotary?.invFreq });
    const scoreBlock = inp.scoreBlock ?? DEFAULT_SCORE_BLOCK;
    const { bias, long } = forwardBias(x, inp.mask, { heads: s.heads, scoreBlock, longOnly: inp.longOnly }); // (B, 1, 1, T|1, P+T)
    const present: SideOutputs['present'] = { keys: [], values: [] };
    s.layers.forEach((t, j) => {
      x = g.scope(`layers.${j}`, () => {
        let h = x; // (B, T, d_s)
        if (t !== undefined) {
          const lateral = down(t);
          const gate = sigmoid(p(`layers.${j}.gate`), 'Gate'); // (d_s) or (1)
          h = add(lateral, mul(gate, sub(x, lateral)), 'Ladder'); // g x + (1 - g) lateral
        }
        const block = (h: Value) => {
          const a = rmsNorm(h, p(`layers.${j}.attn_norm`), { eps: s.eps, name: 'attn_norm' });
          const attn = g.scope('attn', () =>
            cachedAttention(
              {
                q: linear(a, p(`layers.${j}.wq`), undefined, { name: 'q_proj' }),
                k: linear(a, p(`layers.${j}.wk`), undefined, { name: 'k_proj' }),
                v: linear(a, p(`layers.${j}.wv`), undefined, { name: 'v_proj' }),
                pastK: inp.past?.keys[j],
                pastV: inp.past?.values[j],
                rotary: { kind: 'tables', cos, sin },
                qNorm: s.qkNorm ? p(`layers.${j}.q_norm`) : undefined,
                kNorm: s.qkNorm ? p(`layers.${j}.k_norm`) : undefined,
                bias,
                long,
              },
              {
                heads: s.heads,
                kvHeads: s.heads,
                headDim: s.headDim,
                eps: s.eps,
                scoreBlock,
                longOnly: inp.longOnly,
              },
            ),
          );
          present.keys[j] = attn.presentK; // by index: a recomputed block sets them again
          present.values[j] = attn.presentV;
          const o = linear(attn.out, p(`layers.${j}.wo`), undefined, { name: 'attn/o_proj' });
          const x1 = add(h, drop(o, 'attn_dropout', 2 * j + 1), 'residual_attn');
          const m = rmsNorm(x1, p(`layers.${j}.mlp_norm`), { eps: s.eps, name: 'mlp_norm' });
          const mlp = g.scope('mlp', () => {
            const gate = linear(m, p(`layers.${j}.w_gate`), undefined, { name: 'gate_proj' });
            const up = linear(m, p(`layers.${j}.w_up`), undefined, { name: 'up_proj' });
            return linear(swiglu(gate, up), p(`layers.${j}.w_down`), undefined, { name: 'down_proj' });
          });
          return add(x1, drop(mlp, 'mlp_dropout', 2 * j + 2), 'residual_mlp'); // (B, T, d_s)
        };
        if (!inp.recompute) return block(h);
        if (inp.past) throw new Error('side net: recompute is for training, not decoding with a past');
        return g.scope('block', () => recompute(h, block));
      });
    });
    const normed = rmsNorm(x, p('side_norm'), { eps: s.eps, name: 'side_norm' });
    const up = linear(normed, p('up.weight'), undefined, { name: 'up' }); // (B, T, d)
    return { out: add(inp.finalHidden, up, 'Out'), present };
  });
}
