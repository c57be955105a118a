import { customGrad } from '../autodiff.ts';
import { Graph, GraphError, type Value } from '../builder.ts';
import { add, div, mul, sub } from '../ops/arith.ts';
import { cast } from '../ops/cast.ts';
import { padRuntime, scan, sliceRuntime } from '../ops/control.ts';
import { matmul } from '../ops/matmul.ts';
import { reduceSum } from '../ops/reduce.ts';
import { concat, minOf, RESHAPE, shapeOf, sizeOf, squeeze, unsqueeze } from '../ops/shape.ts';
import { softmax } from '../ops/softmax.ts';

/**
 * Elements of one (B, Hkv, G, rows, S) score block: 4M floats, 16 MB. Sequences whose whole
 * score tensor fits run as one block; longer ones split their queries to stay under it.
 */
export const DEFAULT_SCORE_BLOCK = 4 * 2 ** 20;

export interface ChunkedAttentionOptions {
  /** The most elements one block of scores may hold (see DEFAULT_SCORE_BLOCK). */
  scoreBlock: number;
  name: string;
}

/**
 * softmax(q k^T + bias) v over blocks of query rows, in the manner of FlashAttention
 * (https://arxiv.org/abs/2205.14135): no (T, S) tensor of scores or probabilities outlives its
 * block, in the forward or the backward, so attention's memory grows with T, not T².
 *
 *   q (B, Hkv, G, T, dh) scaled ─ Pad T to n·c ─ Reshape (B, Hkv, G, n, c, dh) ─┐
 *   bias (B|1, 1, 1, T, S)       ─ Pad T to n·c ─ Reshape (B|1, 1, 1, n, c, S) ─┴─ Scan over n (axis 3):
 *       o_i = softmax(q_i k^T + bias_i) v                              (B, Hkv, G, c, S) per block
 *   out = o[:, :, :, :T]                                                (B, Hkv, G, T, dh)
 *
 * The number of blocks n is chosen at run time so a block holds at most `scoreBlock` scores, and
 * c = ceil(T / n) so less than one block is padding; a short sequence (or one decoding step) is
 * a single block. The backward (customGrad) recomputes each block's probabilities p instead of
 * keeping them, with D = rowsum(dO ∘ out):
 *
 *   dS_i = p_i ∘ (dO_i v^T - D_i)      dq_i = dS_i k      dk += dS_i^T q_i      dv += p_i^T dO_i
 *
 * k and v are shared by the G query heads of their group: their gradients sum over G.
 */
export function chunkedAttention(
  q: Value, // (B, Hkv, G, T, dh), already scaled by 1/sqrt(dh)
  k: Value, // (B, Hkv, S, dh)
  v: Value, // (B, Hkv, S, dh)
  bias: Value, // (B|1, 1, 1, T, S) additive
  opts: Partial<ChunkedAttentionOptions> = {},
): Value {
  const o = { scoreBlock: DEFAULT_SCORE_BLOCK, name: 'chunked_attention', ...opts };
  const g = q.graph;
  if (q.rank !== 5 || k.rank !== 4 || v.rank !== 4 || bias.rank !== 5) {
    throw new GraphError(
      `${g.path}/${o.name}: chunkedAttention wants q (B, Hkv, G, T, dh), k and v (B, Hkv, S, dh), ` +
        `bias (B, 1, 1, T, S); got q ${q}, k ${k}, v ${v}, bias ${bias}`,
    );
  }
  if (!(Number.isInteger(o.scoreBlock) && o.scoreBlock > 0)) {
    throw new GraphError(`${g.path}/${o.name}: scoreBlock ${o.scoreBlock} must be a positive integer`);
  }
  return g.scope(o.name, () => {
    const keys = unsqueeze(k, [2]); // (B, Hkv, 1, S, dh)
    const values = unsqueeze(v, [2]); // (B, Hkv, 1, S, dh)
    const blocks = blockPlan(q, k, o.scoreBlock);
    const qBlocks = blocks.split(q, 'Queries'); // (B, Hkv, G, n, c, dh)
    const biasBlocks = blocks.split(cast(bias, q.dtype), 'Bias'); // (B|1, 1, 1, n, c, S)
    const forward = body(g, 'attention_block', [], [qBlocks, biasBlocks], (b, [qi, bi]) => {
      const probs = softmax(add(matmul(qi!, b.outer(keys), { transB: true }), bi!)); // (B, Hkv, G, c, S)
      return [matmul(probs, b.outer(values))]; // (B, Hkv, G, c, dh)
    });
    const [stacked] = scan(g, {
      body: forward,
      states: [],
      scans: [qBlocks, biasBlocks],
      inputAxes: [3, 3],
      outputAxes: [3],
      outShapes: [blocks.stackedShape(q)],
      name: 'Blocks',
    });
    const out = blocks.join(stacked!, q); // (B, Hkv, G, T, dh)
    // The rule builds from the values it is handed, so it survives inlining into another graph.
    return customGrad(out, [q, k, v, bias], (dOut, [q2, k2, v2, bias2], y) =>
      chunkedAttentionGrad(dOut, y, q2!, k2!, v2!, bias2!, o.scoreBlock),
    );
  });
}

/** The backward of chunkedAttention: dq, dk, dv (bias gets none), one block of query rows at a time. */
function chunkedAttentionGrad(
  dOut: Value, // (B, Hkv, G, T, dh)
  out: Value, // (B, Hkv, G, T, dh)
  q: Value,
  k: Value,
  v: Value,
  bias: Value,
  scoreBlock: number,
): (Value | undefined)[] {
  const g = q.graph;
  const keys = unsqueeze(k, [2]); // (B, Hkv, 1, S, dh)
  const values = unsqueeze(v, [2]); // (B, Hkv, 1, S, dh)
  const blocks = blockPlan(q, k, scoreBlock);
  const rowDot = reduceSum(mul(dOut, out), [-1], { keepdims: true }); // (B, Hkv, G, T, 1) = D
  const scans = [
    blocks.split(q, 'Queries'), // (B, Hkv, G, n, c, dh)
    blocks.split(cast(bias, q.dtype), 'Bias'), // (B|1, 1, 1, n, c, S)
    blocks.split(dOut, 'Grads'), // (B, Hkv, G, n, c, dh)
    blocks.split(rowDot, 'RowDots'), // (B, Hkv, G, n, c, 1)
  ];
  const backward = body(
    g,
    'attention_block_grad',
    [keys, values],
    scans,
    (b, [dkIn, dvIn, qi, bi, dOi, Di]) => {
      const kk = b.outer(keys);
      const vv = b.outer(values);
      const p = softmax(add(matmul(qi!, kk, { transB: true }), bi!)); // (B, Hkv, G, c, S)
      const dS = mul(p, sub(matmul(dOi!, vv, { transB: true }), Di!)); // (B, Hkv, G, c, S)
      const sumGroup = (t: Value) => (t.shape[2] === 1 ? t : reduceSum(t, [2], { keepdims: true }));
      return [
        add(dkIn!, sumGroup(matmul(dS, qi!, { transA: true })), 'AccumulateK'), // (B, Hkv, 1, S, dh)
        add(dvIn!, sumGroup(matmul(p, dOi!, { transA: true })), 'AccumulateV'),
        matmul(dS, kk), // dq_i (B, Hkv, G, c, dh)
      ];
    },
  );
  const zeros = (t: Value) => mul(t, g.scalar(0, t.dtype));
  const [dk, dv, dq] = scan(g, {
    body: backward,
    states: [zeros(keys), zeros(values)],
    scans,
    inputAxes: [3, 3, 3, 3],
    outputAxes: [3],
    outShapes: [blocks.stackedShape(q)],
    name: 'GradBlocks',
  });
  return [blocks.join(dq!, q), squeeze(dk!, [2]), squeeze(dv!, [2]), undefined];
}

interface BlockPlan {
  /** (..., T, last) padded along axis 3 to n·c rows and split into (..., n, c, last). */
  split(x: Value, name: string): Value;
  /** The symbolic shape of a stacked (B, Hkv, G, n, c, dh) scan output for q. */
  stackedShape(q: Value): (number | string)[];
  /** (B, Hkv, G, n, c, dh) back to like's (B, Hkv, G, T, dh). */
  join(x: Value, like: Value): Value;
}

/**
 * n = ceil(T / c) blocks of c = ceil(T / min(T, ceil(B·H·T·S / scoreBlock))) rows: each block's
 * scores fit the budget and less than one block of rows is padding.
 */
function blockPlan(q: Value, k: Value, scoreBlock: number): BlockPlan {
  const g = q.graph;
  const one = g.vector([1]);
  const ceilDiv = (a: Value, b: Value) => div(sub(add(a, b), one), b);
  const rows = shapeOf(q, 3, 4); // (1) T
  const keys = shapeOf(k, 2, 3); // (1) S
  const dh = shapeOf(q, 4, 5); // (1)
  const scores = mul(div(unsqueeze(sizeOf(q), [0]), dh), keys); // (1) B·H·T·S
  const wanted = minOf(ceilDiv(scores, g.vector([scoreBlock])), rows);
  const c = ceilDiv(rows, wanted); // (1) rows per block
  const n = ceilDiv(rows, c); // (1) blocks
  const padRows = sub(mul(n, c), rows); // (1)
  const lead = (x: Value) => shapeOf(x, 0, 3); // (3) B, Hkv, G (or B, 1, 1)
  return {
    split(x, name) {
      const zeros = g.vector([0, 0, 0, 0, 0, 0, 0, 0]);
      const pads = concat([zeros, padRows, g.vector([0])], 0); // begins (5), ends: only axis 3
      const padded = padRuntime(x, pads, g.scalar(0, x.dtype), [
        ...x.shape.slice(0, 3),
        'attn_blocks*attn_rows',
        x.shape[4]!,
      ]);
      const shape = concat([lead(x), n, c, shapeOf(x, 4, 5)], 0);
      return g.op(
        RESHAPE,
        [padded, shape],
        {},
        {
          name,
          hints: [[...x.shape.slice(0, 3), 'attn_blocks', 'attn_rows', x.shape[4]!]],
        },
      );
    },
    stackedShape: (like) => [...like.shape.slice(0, 3), 'attn_blocks', 'attn_rows', like.shape[4]!],
    join(x, like) {
      const flat = g.op(
        RESHAPE,
        [x, concat([lead(like), g.vector([-1]), shapeOf(like, 4, 5)], 0)],
        {},
        {
          hints: [[...like.shape.slice(0, 3), 'attn_blocks*attn_rows', like.shape[4]!]],
        },
      );
      return sliceRuntime(flat, g.vector([0]), rows, [3], like.shape);
    },
  };
}

/** A Scan body: (states..., one block of each scan input...) -> (states'..., per-block outputs...). */
function body(
  g: Graph,
  name: string,
  states: readonly Value[],
  scans: readonly Value[],
  fn: (b: Graph, inputs: Value[]) => Value[],
): Graph {
  const b = new Graph({ name, opsets: g.options.opsets });
  b.scope(name, () => {
    const inputs = [
      ...states.map((s, i) => b.input(`${name}/state_${i}`, s.dtype, s.shape)),
      // A block of a (..., n, c, last) scan input sliced along axis 3: (..., c, last).
      ...scans.map((s, i) =>
        b.input(`${name}/block_${i}`, s.dtype, [...s.shape.slice(0, 3), 'attn_rows', s.shape[5]!]),
      ),
    ];
    for (const [i, out] of fn(b, inputs).entries()) b.output(out, `${name}/out_${i}`);
  });
  return b;
}
