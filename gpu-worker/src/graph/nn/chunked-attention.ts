import { customGrad } from '../autodiff.ts';
import { Graph, GraphError, type Value } from '../builder.ts';
import { add, div, mul, sub } from '../ops/arith.ts';
import { cast } from '../ops/cast.ts';
import { padRuntime, scan, sliceRuntime } from '../ops/control.ts';
import { range } from '../ops/integer.ts';
import { matmul } from '../ops/matmul.ts';
import { reduceSum } from '../ops/reduce.ts';
import { concat, EXPAND, minOf, RESHAPE, shapeOf, sizeOf, squeeze, unsqueeze } from '../ops/shape.ts';
import { softmax } from '../ops/softmax.ts';
import { greater, less } from '../ops/unary.ts';
import { MASKED_SCORE } from './attention.ts';

/**
 * Elements of one (B, Hkv, G, rows, S) score block: 4M floats, 16 MB. Sequences whose whole
 * score tensor fits run as one block; longer ones split their queries to stay under it.
 */
export const DEFAULT_SCORE_BLOCK = 4 * 2 ** 20;

export interface ChunkedAttentionOptions {
  /** The most elements one block of scores may hold (see DEFAULT_SCORE_BLOCK). */
  scoreBlock: number;
  /**
   * The bias blocks every key after its query (query i sits at position S - T + i): each block
   * then reads only the keys up to its last query, about half the work of a long sequence.
   */
  causal: boolean;
  name: string;
}

/**
 * softmax(q k^T + bias) v over blocks of query rows, in the manner of FlashAttention
 * (https://arxiv.org/abs/2205.14135): no (T, S) tensor of scores or probabilities outlives its
 * block, in the forward or the backward, so attention's memory grows with T, not T².
 *
 *   q (B, Hkv, G, T, dh) scaled ─ Pad T to n·c ─ Reshape (B, Hkv, G, n, c, dh) ─┐
 *   bias (B|1, 1, 1, T, S)       ─ Pad T to n·c ─ Reshape (B|1, 1, 1, n, c, S) ─┤
 *   ends (n): block i's keys are [0, e_i), e_i = S (or, causal, min(S, S - T + (i+1)·c)) ┴─ Scan over n:
 *       o_i = softmax(q_i k[:e_i]^T + bias_i[:, :e_i]) v[:e_i]           (B, Hkv, G, c, e_i) per block
 *   out = o[:, :, :, :T]                                                  (B, Hkv, G, T, dh)
 *
 * The number of blocks n is chosen at run time so a block holds at most `scoreBlock` scores, and
 * c = ceil(T / n) so less than one block is padding; a short sequence (or one decoding step) is
 * a single block. The backward (customGrad) recomputes each block's probabilities p instead of
 * keeping them, with D = rowsum(dO ∘ out):
 *
 *   dS_i = p_i ∘ (dO_i v^T - D_i)      dq_i = dS_i k      dk += dS_i^T q_i      dv += p_i^T dO_i
 *
 * k and v are shared by the G query heads of their group: their gradients sum over G.
 *
 * A bias of one row, (B|1, 1, 1, 1, S), is a key bias (keyBias): added to every row, or, causal,
 * turned into attentionBias's rows inside each block (0 on the diagonal, MASKED_SCORE on later
 * keys), so the (T, S) bias never exists either: attention's memory is then linear in T throughout.
 */
export function chunkedAttention(
  q: Value, // (B, Hkv, G, T, dh), already scaled by 1/sqrt(dh)
  k: Value, // (B, Hkv, S, dh)
  v: Value, // (B, Hkv, S, dh)
  bias: Value, // (B|1, 1, 1, T, S) additive, or (B|1, 1, 1, 1, S) a key bias
  opts: Partial<ChunkedAttentionOptions> = {},
): Value {
  const o = { scoreBlock: DEFAULT_SCORE_BLOCK, causal: false, name: 'chunked_attention', ...opts };
  const g = q.graph;
  if (q.rank !== 5 || k.rank !== 4 || v.rank !== 4 || bias.rank !== 5) {
    throw new GraphError(
      `${g.path}/${o.name}: chunkedAttention wants q (B, Hkv, G, T, dh), k and v (B, Hkv, S, dh), ` +
        `bias (B, 1, 1, T|1, S); got q ${q}, k ${k}, v ${v}, bias ${bias}`,
    );
  }
  if (!(Number.isInteger(o.scoreBlock) && o.scoreBlock > 0)) {
    throw new GraphError(`${g.path}/${o.name}: scoreBlock ${o.scoreBlock} must be a positive integer`);
  }
  return g.scope(o.name, () => {
    const { keys, values, blocks, scans, bias: source } = blockInputs(q, k, v, bias, o);
    const forward = body(g, 'attention_block', [], scans, (b, [qi, end, extra]) => {
      const { p, vv } = blockProbs(b, keys, values, qi!, end!, extra, source);
      return [matmul(p, vv)]; // (B, Hkv, G, c, dh)
    });
    const [stacked] = scan(g, {
      body: forward,
      states: [],
      scans,
      inputAxes: [3, 0, ...source.axes],
      outputAxes: [3],
      outShapes: [blocks.stackedShape(q)],
      name: 'Blocks',
    });
    const out = blocks.join(stacked!, q); // (B, Hkv, G, T, dh)
    // The rule builds from the values it is handed, so it survives inlining into another graph.
    return customGrad(out, [q, k, v, bias], (dOut, [q2, k2, v2, bias2], y) =>
      chunkedAttentionGrad(dOut, y, q2!, k2!, v2!, bias2!, o),
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
  o: ChunkedAttentionOptions,
): (Value | undefined)[] {
  const g = q.graph;
  const { keys, values, blocks, scans: forwardScans, bias: source } = blockInputs(q, k, v, bias, o);
  const [qBlocks, ends, extra] = forwardScans as [Value, Value, Value | undefined];
  const rowDot = reduceSum(mul(dOut, out), [-1], { keepdims: true }); // (B, Hkv, G, T, 1) = D
  const scans = [
    qBlocks,
    ends,
    blocks.split(dOut, 'Grads'), // (B, Hkv, G, n, c, dh)
    blocks.split(rowDot, 'RowDots'), // (B, Hkv, G, n, c, 1)
    ...(extra ? [extra] : []),
  ];
  const backward = body(
    g,
    'attention_block_grad',
    [keys, values],
    scans,
    (b, [dkIn, dvIn, qi, end, dOi, Di, ex]) => {
      const { p, kk, vv } = blockProbs(b, keys, values, qi!, end!, ex, source); // p (B, Hkv, G, c, e)
      const dS = mul(p, sub(matmul(dOi!, vv, { transB: true }), Di!)); // (B, Hkv, G, c, e)
      // Sum over the group's query heads, then back to all S keys (the ones past e get nothing).
      const toKeys = (t: Value) => {
        const summed = t.shape[2] === 1 ? t : reduceSum(t, [2], { keepdims: true }); // (B, Hkv, 1, e, dh)
        if (!o.causal) return summed;
        const missing = sub(shapeOf(b.outer(keys), 3, 4), unsqueeze(end!, [0])); // (1) S - e
        const pads = concat([b.vector([0, 0, 0, 0, 0, 0, 0, 0]), missing, b.vector([0])], 0);
        return padRuntime(summed, pads, b.scalar(0, t.dtype), keys.shape);
      };
      return [
        add(dkIn!, toKeys(matmul(dS, qi!, { transA: true })), 'AccumulateK'), // (B, Hkv, 1, S, dh)
        add(dvIn!, toKeys(matmul(p, dOi!, { transA: true })), 'AccumulateV'),
        matmul(dS, kk), // dq_i (B, Hkv, G, c, dh)
      ];
    },
  );
  const zeros = (t: Value) => mul(t, g.scalar(0, t.dtype));
  const [dk, dv, dq] = scan(g, {
    body: backward,
    states: [zeros(keys), zeros(values)],
    scans,
    inputAxes: [3, 0, 3, 3, ...source.axes],
    outputAxes: [3],
    outShapes: [blocks.stackedShape(q)],
    name: 'GradBlocks',
  });
  return [blocks.join(dq!, q), squeeze(dk!, [2]), squeeze(dv!, [2]), undefined];
}

/**
 * Where a block's bias comes from: its rows of a (T, S) bias, scanned with it; or a key bias
 * (B|1, 1, 1, 1, S) read whole, with attentionBias's causal rows rebuilt in the block from its
 * first query's position (scanned) when causal. `axes`: the Scan input axis of what it scans
 * after q's blocks and the key counts (none for a key bias without causal rows).
 */
type BiasSource =
  | { kind: 'rows'; causal: boolean; axes: [number] }
  | { kind: 'keys'; bias: Value; causal: boolean; axes: [number] | [] };

/** What both passes scan over: q in blocks of rows, each block's key count, and its bias source. */
function blockInputs(q: Value, k: Value, v: Value, bias: Value, o: ChunkedAttentionOptions) {
  const blocks = blockPlan(q, k, o.scoreBlock, o.causal);
  const typed = cast(bias, q.dtype);
  const keysOnly = bias.shape[3] === 1;
  const scans = [blocks.split(q, 'Queries'), blocks.ends]; // (B, Hkv, G, n, c, dh), (n)
  let source: BiasSource;
  if (!keysOnly) {
    scans.push(blocks.split(typed, 'Bias')); // (B|1, 1, 1, n, c, S)
    source = { kind: 'rows', causal: o.causal, axes: [3] };
  } else if (o.causal) {
    scans.push(blocks.starts!); // (n)
    source = { kind: 'keys', bias: typed, causal: true, axes: [0] };
  } else source = { kind: 'keys', bias: typed, causal: false, axes: [] };
  return {
    keys: unsqueeze(k, [2]), // (B, Hkv, 1, S, dh)
    values: unsqueeze(v, [2]), // (B, Hkv, 1, S, dh)
    blocks,
    scans,
    bias: source,
  };
}

/** One block's probabilities softmax(q_i k^T + bias_i) over the keys it reads, and those keys and values. */
function blockProbs(
  b: Graph,
  keys: Value,
  values: Value,
  qi: Value, // (B, Hkv, G, c, dh)
  end: Value, // () int64
  extra: Value | undefined, // the block's bias rows (B|1, 1, 1, c, S) or first query position ()
  source: BiasSource,
): { p: Value; kk: Value; vv: Value } {
  const seen = visible(b, end, source.causal);
  const kk = seen(b.outer(keys), 3); // (B, Hkv, 1, e, dh)
  const vv = seen(b.outer(values), 3);
  const bias =
    source.kind === 'rows' ? seen(extra!, 4) : blockBias(b, seen(b.outer(source.bias), 4), qi, end, extra);
  return { p: softmax(add(matmul(qi, kk, { transB: true }), bias)), kk, vv }; // p (B, Hkv, G, c, e)
}

/**
 * attentionBias's rows for one block, from the key bias: 0 on the diagonal (a query always reads
 * itself), MASKED_SCORE on a later key, the key bias elsewhere. (B|1, 1, 1, c, e)
 */
function blockBias(b: Graph, keyBias: Value, qi: Value, end: Value, start: Value | undefined): Value {
  if (!start) return keyBias; // not causal: the key bias on every row
  const one = b.scalar(1, 'int64');
  const zero = b.scalar(0, 'int64');
  const rows = squeeze(shapeOf(qi, 3, 4), [0]); // () c
  const query = unsqueeze(add(range(zero, rows, one, 'attn_rows'), start), [1]); // (c, 1) positions
  const key = unsqueeze(range(zero, end, one, 'attn_keys'), [0]); // (1, e)
  const dtype = keyBias.dtype;
  // As arithmetic rather than two broadcasting Wheres, which onnxruntime's CPU kernel runs ~2.5x
  // slower over a (c, e) block; with a side net's few heads the bias is as large as the scores,
  // and building it was ~40% of a 2k-token LST step's side part. Exactly one of the two terms is
  // nonzero off the diagonal, so the sum is the chosen value itself; on the diagonal both are 0.
  const later = cast(greater(key, query), dtype); // (c, e) 1 on a later key
  const earlier = cast(less(key, query), dtype); // (c, e) 1 on an earlier key
  return add(mul(later, b.scalar(MASKED_SCORE, dtype)), mul(earlier, keyBias)); // (B|1, 1, 1, c, e)
}

/** Inside a block: x's first `end` keys along `axis` when causal, else all of x. */
function visible(b: Graph, end: Value, causal: boolean): (x: Value, axis: number) => Value {
  return (x, axis) => {
    if (!causal) return x;
    const shape = x.shape.map((d, i) => (i === axis ? 'attn_keys' : d));
    return sliceRuntime(x, b.vector([0]), unsqueeze(end, [0]), [axis], shape);
  };
}

interface BlockPlan {
  /** (..., T, last) padded along axis 3 to n·c rows and split into (..., n, c, last). */
  split(x: Value, name: string): Value;
  /** (n) int64: how many keys block i reads. */
  ends: Value;
  /** (n) int64: the position of block i's first query (causal plans only). */
  starts: Value | undefined;
  /** The symbolic shape of a stacked (B, Hkv, G, n, c, dh) scan output for q. */
  stackedShape(q: Value): (number | string)[];
  /** (B, Hkv, G, n, c, dh) back to like's (B, Hkv, G, T, dh). */
  join(x: Value, like: Value): Value;
}

/**
 * n = ceil(T / c) blocks of c = ceil(T / min(T, ceil(B·H·T·S / scoreBlock))) rows: each block's
 * scores fit the budget and less than one block of rows is padding.
 */
function blockPlan(q: Value, k: Value, scoreBlock: number, causal: boolean): BlockPlan {
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
  const scalar = (x: Value) => squeeze(x, [0]);
  // Block i's last query sits at S - T + (i+1)·c - 1: with a causal bias no later key is read.
  const ends = causal
    ? minOf(
        add(
          range(scalar(c), add(scalar(mul(n, c)), g.scalar(1, 'int64')), scalar(c), 'attn_blocks'),
          sub(keys, rows),
        ),
        keys,
      )
    : g.op(EXPAND, [keys, n], {}, { hints: [['attn_blocks']] }); // S for every block
  // Block i's first query sits at S - T + i·c.
  const starts = causal
    ? add(range(g.scalar(0, 'int64'), scalar(mul(n, c)), scalar(c), 'attn_blocks'), scalar(sub(keys, rows)))
    : undefined;
  return {
    ends,
    starts,
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

/**
 * A Scan body: (states..., one block of each scan input...) -> (states'..., per-block outputs...).
 * A (..., n, c, last) input is sliced along axis 3 to (..., c, last); a (n) input to a scalar.
 */
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
      ...scans.map((s, i) =>
        b.input(
          `${name}/block_${i}`,
          s.dtype,
          s.rank === 1 ? [] : [...s.shape.slice(0, 3), 'attn_rows', s.shape[5]!],
        ),
      ),
    ];
    for (const [i, out] of fn(b, inputs).entries()) b.output(out, `${name}/out_${i}`);
  });
  return b;
}
