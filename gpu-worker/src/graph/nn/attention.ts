import { type Graph, GraphError, isFloat, type Value } from '../builder.ts';
import { dimEq, shapeStr } from '../dims.ts';
import { add, scale, sub } from '../ops/arith.ts';
import { cast } from '../ops/cast.ts';
import { logicalAnd, logicalNot, logicalOr, range } from '../ops/integer.ts';
import { matmul } from '../ops/matmul.ts';
import { reshape, shapeOf, squeeze, transpose, unsqueeze } from '../ops/shape.ts';
import { softmax } from '../ops/softmax.ts';
import { equal, greater, less, where } from '../ops/unary.ts';
import { linear } from './linear.ts';
import { atLeastFloat32 } from './precision.ts';
import { applyRotary } from './rotary.ts';

export interface AttentionParams {
  wq: Value; // (D, H*Dh)
  wk: Value; // (D, Hkv*Dh)
  wv: Value; // (D, Hkv*Dh)
  wo: Value; // (H*Dh, D)
  bq?: Value; // (H*Dh)
  bk?: Value; // (Hkv*Dh)
  bv?: Value; // (Hkv*Dh)
}

export interface AttentionOptions {
  heads: number;
  /** Key/value heads; divides `heads` (grouped-query attention), equal to it for plain MHA. */
  kvHeads: number;
  headDim: number;
  cos: Value; // (B, T, Dh/2), from rotaryTables
  sin: Value; // (B, T, Dh/2)
  /** 1 = token, 0 = padding; padded keys get no attention. */
  mask?: Value | undefined; // (B, T) float
  /**
   * The additive score bias from `attentionBias`; pass one built once per forward so every layer
   * shares it. Built here from `mask` when absent.
   */
  bias?: Value | undefined; // (B|1, 1, 1, T, T)
  name: string;
}

/**
 * The score of a blocked key. Large but finite, so a row whose keys are all blocked (the query of
 * a left-padding token) is a finite uniform softmax instead of 0/0.
 */
export const MASKED_SCORE = -1e9;

/**
 * Causal self-attention with grouped-query heads (https://arxiv.org/abs/1706.03762,
 * https://arxiv.org/abs/2305.13245). Query head h = j*G + r reads key/value head j, as HF's
 * repeat_kv; the repeat is a broadcast of k and v over the group axis G = H / Hkv, so no copies
 * are made and the driver's unbroadcast sums the group's gradients back into each k/v head.
 *
 *   x (B, T, D)
 *   ├─ q_proj ─ Reshape (B, T, Hkv, G, Dh) ─ Transpose (B, Hkv, G, T, Dh) ─ rotary ─ * 1/sqrt(Dh) ─ q
 *   ├─ k_proj ─ Reshape (B, T, Hkv, 1, Dh) ─ Transpose (B, Hkv, 1, T, Dh) ─ rotary ─────────────── k
 *   └─ v_proj ─ Reshape (B, T, Hkv, 1, Dh) ─ Transpose (B, Hkv, 1, T, Dh) ──────────────────────── v
 *   scores = q k^T + bias                       (B, Hkv, G, T, T)   bias: MASKED_SCORE where blocked
 *   probs  = softmax(scores)                    (at least float32)
 *   out    = probs v ─ Transpose (B, T, Hkv, G, Dh) ─ Reshape (B, T, H*Dh) ─ o_proj ─ (B, T, D)
 */
export function causalSelfAttention(
  x: Value, // (B, T, D)
  params: AttentionParams,
  opts: Partial<AttentionOptions> & Pick<AttentionOptions, 'heads' | 'kvHeads' | 'headDim' | 'cos' | 'sin'>,
): Value {
  const o = { name: 'attn', ...opts } satisfies AttentionOptions;
  const g = x.graph;
  checkAttention(g, x, params, o);
  const { heads, kvHeads, headDim } = o;
  const group = heads / kvHeads;
  return g.scope(o.name, () => {
    const toHeads = (t: Value, groups: number, tag: string) => {
      const split = reshape(t, [0, 0, kvHeads, groups, headDim], `Reshape${tag}`); // (B, T, Hkv, groups, Dh)
      return transpose(split, [0, 2, 3, 1, 4], `Transpose${tag}`); // (B, Hkv, groups, T, Dh)
    };
    const q = toHeads(linear(x, params.wq, params.bq, { name: 'q_proj' }), group, 'Q');
    const k = toHeads(linear(x, params.wk, params.bk, { name: 'k_proj' }), 1, 'K');
    const v = toHeads(linear(x, params.wv, params.bv, { name: 'v_proj' }), 1, 'V');
    const qRot = scale(applyRotary(q, o.cos, o.sin, { name: 'q_rotary' }), 1 / Math.sqrt(headDim), 'ScaleQ');
    const kRot = applyRotary(k, o.cos, o.sin, { name: 'k_rotary' });

    const scores = atLeastFloat32(matmul(qRot, kRot, { transB: true, name: 'Scores' })); // (B, Hkv, G, T, T)
    const bias = o.bias ?? attentionBias(x, o.mask);
    const probs = cast(softmax(add(scores, cast(bias, scores.dtype), 'AddBias')), v.dtype); // (B, Hkv, G, T, T)
    const out = matmul(probs, v, { name: 'Context' }); // (B, Hkv, G, T, Dh)
    const tokensFirst = transpose(out, [0, 3, 1, 2, 4], 'TransposeContext'); // (B, T, Hkv, G, Dh)
    const merged = reshape(tokensFirst, [0, 0, heads * headDim], 'MergeHeads'); // (B, T, H*Dh)
    return linear(merged, params.wo, undefined, { name: 'o_proj' }); // (B, T, D)
  });
}

/**
 * The additive attention bias: 0 where query i may read key j, MASKED_SCORE where it may not
 * (a future key, or a padding key). Built at run time so B and T may be symbolic, and built once
 * per forward: every layer adds the same tensor. With a key/value cache the mask covers the past
 * keys too, mask (B, S) with S = P + T, and query i sits at absolute position P + i.
 *
 *   Range(0, S) ─────────────── Unsqueeze (1, S) key j ──┐
 *   Range(S - T, S) ─────────── Unsqueeze (T, 1) query i ┴─ Greater: j > i ─ future (T, S) ──┐
 *   mask (B, S) ─ Less 0.5 (padding) ─ Unsqueeze (B, 1, 1, 1, S) ─────────────────────────────┴─ Or
 *   ─ And Not(j == i) ─ Where(MASKED_SCORE, 0) ─ bias (B|1, 1, 1, T, S)
 *
 * The diagonal is never blocked, so no row is all-blocked (a left-padding query reads itself).
 * Then exp(MASKED_SCORE - max) is exactly 0 in float32, blocked keys get probability 0 and no
 * gradient, and the additive form computes exactly the function it differentiates.
 */
export function attentionBias(
  x: Value, // (B, T, ...)
  mask?: Value, // (B, S) 1 = token (float or int), S = T without a cache
): Value {
  const g = x.graph;
  return g.scope('attention_bias', () => {
    const one = g.scalar(1, 'int64');
    const length = squeeze(shapeOf(x, 1, 2), [0]); // () int64, T
    const total = mask ? squeeze(shapeOf(mask, 1, 2), [0]) : length; // () int64, S
    const key = unsqueeze(range(g.scalar(0, 'int64'), total, one, mask ? mask.shape[1]! : x.shape[1]!), [0]); // (1, S)
    const query = unsqueeze(range(sub(total, length), total, one, x.shape[1]!), [1]); // (T, 1)
    let blocked = greater(key, query); // (T, S) key after query
    if (mask) {
      const keep = isFloat(mask.dtype) ? mask : cast(mask, 'float32');
      const padding = unsqueeze(less(keep, g.scalar(0.5, keep.dtype)), [1, 2, 3]); // (B, 1, 1, 1, S)
      blocked = logicalAnd(logicalOr(blocked, padding), logicalNot(equal(key, query))); // (B, 1, 1, T, S)
    }
    return where(blocked, g.scalar(MASKED_SCORE, 'float32'), g.scalar(0, 'float32'), 'Bias');
  });
}

/**
 * attentionBias's padding part alone, (B, 1, 1, 1, S): MASKED_SCORE on a padding key, 0 elsewhere.
 * chunkedAttention (causal) rebuilds attentionBias's rows from it block by block, so no (T, S)
 * tensor is ever whole: over 8k tokens that one is 256 MB, kept for every layer's backward.
 */
export function keyBias(mask: Value): Value {
  const g = mask.graph;
  return g.scope('attention_bias', () => {
    const keep = isFloat(mask.dtype) ? mask : cast(mask, 'float32');
    const padding = unsqueeze(less(keep, g.scalar(0.5, keep.dtype)), [1, 2, 3]); // (B, 1, 1, 1, S)
    return where(padding, g.scalar(MASKED_SCORE, 'float32'), g.scalar(0, 'float32'), 'KeyBias');
  });
}

/** Every shape problem at once, so a wrong config is fixed in one go. */
function checkAttention(g: Graph, x: Value, p: AttentionParams, o: AttentionOptions): void {
  const problems: string[] = [];
  const { heads, kvHeads, headDim } = o;
  if (!(kvHeads > 0 && heads > 0 && heads % kvHeads === 0)) {
    problems.push(`kvHeads ${kvHeads} must divide heads ${heads}`);
  }
  if (headDim % 2 !== 0) problems.push(`headDim ${headDim} must be even (rotary pairs)`);
  if (x.rank !== 3) problems.push(`x ${x} must be (B, T, D)`);
  const model = x.shape.at(-1)!;
  const expect = (name: string, v: Value | undefined, shape: (number | string)[]) => {
    if (v && (v.rank !== shape.length || v.shape.some((d, i) => !dimEq(d, shape[i]!)))) {
      problems.push(`${name} ${v} should be ${shapeStr(shape)}`);
    }
  };
  expect('wq', p.wq, [model, heads * headDim]);
  expect('wk', p.wk, [model, kvHeads * headDim]);
  expect('wv', p.wv, [model, kvHeads * headDim]);
  expect('wo', p.wo, [heads * headDim, model]);
  expect('bq', p.bq, [heads * headDim]);
  expect('bk', p.bk, [kvHeads * headDim]);
  expect('bv', p.bv, [kvHeads * headDim]);
  if (o.mask) expect('mask', o.mask, [x.shape[0]!, x.shape[1]!]);
  if (o.mask && !isFloat(o.mask.dtype))
    problems.push(`mask ${o.mask} must be float (1 = token, 0 = padding)`);
  if (problems.length) {
    const at = `${g.path === '/' ? '' : g.path}/${o.name}`;
    throw new GraphError(`${at}: causalSelfAttention: ${problems.join('; ')}`);
  }
}
