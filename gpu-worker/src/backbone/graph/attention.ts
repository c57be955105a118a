import {
  add,
  applyRotary,
  attentionBias,
  cast,
  chunkedAttention,
  concat,
  GraphError,
  greater,
  ifElse,
  keyBias,
  matmul,
  mul,
  reshape,
  rmsNorm,
  scale,
  shapeOf,
  softmax,
  transpose,
  unsqueeze,
  type Value,
} from '../../graph/index.ts';
import { RESHAPE } from '../../graph/ops/shape.ts';
import { fusedRotary } from './fused.ts';

export interface CachedAttentionInputs {
  q: Value; // (B, T, H*dh) projected queries
  k: Value; // (B, T, Hkv*dh)
  v: Value; // (B, T, Hkv*dh)
  /** The cache so far; absent when there is none (training over whole sequences). */
  pastK?: Value | undefined; // (B, Hkv, P, dh)
  pastV?: Value | undefined; // (B, Hkv, P, dh)
  rotary: Rotary;
  bias: Value; // (B, 1, 1, T, P+T) additive, from attentionBias (or keyBias / longOnlyBias)
  /** With CachedAttentionShape.longOnly: longOnlyBias's choice, shared by every layer. */
  long?: Value | undefined;
  /** Qwen3: RMSNorm over each head's dh before RoPE. */
  qNorm?: Value | undefined; // (dh)
  kNorm?: Value | undefined; // (dh)
}

/** RoPE as primitive ops over in-graph tables, or onnxruntime's fused kernel over caches. */
export type Rotary =
  | { kind: 'tables'; cos: Value; sin: Value } // (B, T, dh/2) each
  | { kind: 'fused'; positions: Value; cos: Value; sin: Value }; // (B, T) int64; (max_pos, dh/2)

export interface CachedAttentionShape {
  heads: number;
  kvHeads: number;
  headDim: number;
  eps: number;
  /**
   * Attention over blocks of query rows holding at most this many scores each (chunkedAttention:
   * memory linear in T, forward and backward); 0 or absent: one softmax over all T x (P+T) scores.
   */
  scoreBlock?: number | undefined;
  /**
   * With scoreBlock: use blocks only when this call's scores would exceed it, chosen at run time
   * (ONNX If), so a decoding step (one query row) stays one plain softmax while a long prompt's
   * prefill never holds (T, P+T) scores per head. Generation graphs; no gradient goes through it.
   */
  longOnly?: boolean | undefined;
}

/**
 * Grouped-query attention over the key/value cache (k/v heads broadcast over the group axis G).
 *
 *   q (B, T, H*dh) ─ Reshape (B, T, Hkv, G, dh) ─ [q_norm] ─ Transpose (B, Hkv, G, T, dh) ─ RoPE ─ / sqrt(dh)
 *   k (B, T, Hkv*dh) ─ Reshape (B, T, Hkv, dh) ─ [k_norm] ─ Transpose (B, Hkv, T, dh) ─ RoPE ─┐
 *   past_k (B, Hkv, P, dh) ─────────────────────────────────────────────────────── Concat ─ present_k (B, Hkv, P+T, dh)
 *   v likewise ─ present_v
 *   scores = q present_k^T + bias (B, Hkv, G, T, P+T) ─ Softmax ─ @ present_v ─ (B, T, H*dh)
 *   (or the same over blocks of query rows, chunkedAttention, when shape.scoreBlock is set:
 *   always, or with longOnly only for calls with more scores than that)
 */
export function cachedAttention(
  a: CachedAttentionInputs,
  s: CachedAttentionShape,
): { out: Value; presentK: Value; presentV: Value } {
  const group = s.heads / s.kvHeads;
  const r = a.rotary;
  const qHeads = reshape(a.q, [0, 0, s.kvHeads, group, s.headDim], 'ReshapeQ'); // (B, T, Hkv, G, dh)
  const kHeads = reshape(a.k, [0, 0, s.kvHeads, s.headDim], 'ReshapeK'); // (B, T, Hkv, dh)
  const vHeads = reshape(a.v, [0, 0, s.kvHeads, s.headDim], 'ReshapeV'); // (B, T, Hkv, dh)
  let qNormed = a.qNorm ? rmsNorm(qHeads, a.qNorm, { eps: s.eps, name: 'q_norm' }) : qHeads;
  let kNormed = a.kNorm ? rmsNorm(kHeads, a.kNorm, { eps: s.eps, name: 'k_norm' }) : kHeads;
  if (r.kind === 'fused') {
    // The kernel rotates (B, T, heads*dh) rows: fold the heads, rotate, unfold.
    const rot = (t: Value, heads: number, name: string, shape: number[]) =>
      reshape(fusedRotary(reshape(t, [0, 0, heads * s.headDim]), r.positions, r, heads, name), shape);
    qNormed = rot(qNormed, s.heads, 'q_rotary', [0, 0, s.kvHeads, group, s.headDim]);
    kNormed = rot(kNormed, s.kvHeads, 'k_rotary', [0, 0, s.kvHeads, s.headDim]);
  }
  const q = transpose(qNormed, [0, 2, 3, 1, 4], 'TransposeQ'); // (B, Hkv, G, T, dh)
  const k = transpose(kNormed, [0, 2, 1, 3], 'TransposeK'); // (B, Hkv, T, dh)
  const v = transpose(vHeads, [0, 2, 1, 3], 'TransposeV'); // (B, Hkv, T, dh)
  const qRope = r.kind === 'tables' ? applyRotary(q, r.cos, r.sin, { name: 'q_rotary' }) : q;
  const kRot = r.kind === 'tables' ? applyRotary(k, r.cos, r.sin, { name: 'k_rotary' }) : k;
  const qRot = scale(qRope, 1 / Math.sqrt(s.headDim), 'ScaleQ');
  const presentK = a.pastK ? concat([a.pastK, kRot], 2, 'PresentK') : kRot; // (B, Hkv, P+T, dh)
  const presentV = a.pastV ? concat([a.pastV, v], 2, 'PresentV') : v; // (B, Hkv, P+T, dh)
  const context = attend(qRot, presentK, presentV, a, s); // (B, Hkv, G, T, dh)
  const merged = reshape(
    transpose(context, [0, 3, 1, 2, 4], 'TransposeContext'),
    [0, 0, s.heads * s.headDim],
    'MergeHeads',
  ); // (B, T, H*dh)
  return { out: merged, presentK, presentV };
}

/** Full, blocked, or (longOnly) blocked when the scores are many: see CachedAttentionShape. */
function attend(
  q: Value,
  keys: Value,
  values: Value,
  a: CachedAttentionInputs,
  s: CachedAttentionShape,
): Value {
  const { scoreBlock } = s;
  if (!scoreBlock) return fullAttention(q, keys, values, a.bias);
  const blocked = (q: Value, k: Value, v: Value, b: Value) =>
    chunkedAttention(q, k, v, b, { scoreBlock, causal: true });
  if (!s.longOnly) return blocked(q, keys, values, a.bias);
  if (!a.long)
    throw new GraphError(`${q.graph.path}: longOnly attention needs longOnlyBias's bias and choice`);
  const g = q.graph;
  const rows = [a.bias.shape[0]!, 1, 1, 1, a.bias.shape[4]!];
  const [context] = ifElse(g, a.long, {
    // longOnlyBias gave the key bias here: the blocks rebuild the causal rows
    ifTrue: (b) => {
      const keyRows = b.op(RESHAPE, [b.outer(a.bias), b.vector([0, 1, 1, 1, -1])], {}, { hints: [rows] });
      return [blocked(b.outer(q), b.outer(keys), b.outer(values), keyRows)];
    },
    // and attentionBias's rows here: one per query
    ifFalse: (b) => {
      const bias = b.outer(a.bias);
      const allRows = b.op(
        RESHAPE,
        [bias, shapeOf(bias)],
        {},
        { hints: [[...rows.slice(0, 3), q.shape[3]!, rows[4]!]] },
      );
      return [fullAttention(b.outer(q), b.outer(keys), b.outer(values), allRows)];
    },
    shapes: [q.shape],
    name: 'LongPrompt',
  });
  return context!;
}

/**
 * The bias every layer of a forward shares, and (longOnly) the choice its Ifs share: attentionBias's
 * (T, P+T) rows for one softmax (scoreBlock 0); keyBias when blocks are always taken (they rebuild
 * the causal rows); longOnlyBias when only long calls take them.
 */
export function forwardBias(
  x: Value, // (B, T, ...)
  mask: Value, // (B, P+T)
  s: Pick<CachedAttentionShape, 'heads' | 'scoreBlock' | 'longOnly'>,
): { bias: Value; long?: Value | undefined } {
  if (!s.scoreBlock) return { bias: attentionBias(x, mask) };
  if (s.longOnly) return longOnlyBias(x, mask, s.heads, s.scoreBlock);
  return { bias: keyBias(mask) };
}

/**
 * The bias for attention that takes blocks for long calls only (CachedAttentionShape.longOnly),
 * and that choice: a call with more than scoreBlock scores per layer (B·heads·T·(P+T)) gets
 * keyBias, from which the blocks rebuild the causal rows, so a long prompt never holds a
 * (T, P+T) bias either; any other call (a decoding step) gets attentionBias's rows.
 */
function longOnlyBias(
  x: Value, // (B, T, ...)
  mask: Value, // (B, P+T)
  heads: number,
  scoreBlock: number,
): { bias: Value; long: Value } {
  const g = x.graph;
  return g.scope('attention_bias', () => {
    const scores = mul(mul(shapeOf(x, 0, 1), shapeOf(x, 1, 2)), mul(shapeOf(mask, 1, 2), g.vector([heads])));
    const long = greater(scores, g.vector([scoreBlock]));
    const [bias] = ifElse(g, long, {
      ifTrue: (b) => [keyBias(b.outer(mask))],
      ifFalse: (b) => [attentionBias(b.outer(x), b.outer(mask))],
      shapes: [[x.shape[0]!, 1, 1, 'bias_rows', mask.shape[1]!]],
      name: 'Rows',
    });
    return { bias: bias!, long };
  });
}

/** softmax(q k^T + bias) v in one piece: (B, Hkv, G, T, P+T) scores, kept for the backward. */
function fullAttention(q: Value, presentK: Value, presentV: Value, bias: Value): Value {
  const keys = unsqueeze(presentK, [2]); // (B, Hkv, 1, P+T, dh)
  const values = unsqueeze(presentV, [2]); // (B, Hkv, 1, P+T, dh)
  const scores = matmul(q, keys, { transB: true, name: 'Scores' }); // (B, Hkv, G, T, P+T)
  const probs = softmax(add(scores, cast(bias, scores.dtype), 'AddBias')); // (B, Hkv, G, T, P+T)
  return matmul(probs, values, { name: 'Context' }); // (B, Hkv, G, T, dh)
}
