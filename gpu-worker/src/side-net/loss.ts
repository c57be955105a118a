import {
  add,
  concat,
  customGrad,
  div,
  equal,
  exp,
  Graph,
  greater,
  matmul,
  mul,
  neg,
  padRuntime,
  reduceSum,
  reshape,
  reshapeAs,
  scan,
  shapeOf,
  sliceRuntime,
  softmaxCrossEntropy,
  sub,
  unsqueeze,
  type Value,
  where,
} from '../graph/index.ts';
import { scatterElementsAdd } from '../graph/ops/gather-elements.ts';
import { SOFTMAX_CROSS_ENTROPY } from '../graph/ops/softmax-cross-entropy.ts';

export interface LmLossOptions {
  /** Tokens per chunk: the loss never holds more than (chunk, V) logits at once. */
  chunk: number;
  ignoreIndex: number;
}

/** A chunk whose (chunk, V) float32 logits take about 32 MB, at least 16 tokens. */
export function defaultChunk(vocab: number): number {
  return Math.max(16, Math.min(4096, Math.floor((32 * 2 ** 20) / (4 * vocab) / 16) * 16));
}

/**
 * Mean next-token cross-entropy of LMHead(hidden) over the labelled tokens, without ever
 * materialising the (T, V) logits: rows go through the frozen head in chunks (an ONNX Scan), and
 * the backward recomputes each chunk's logits instead of keeping them, so the loss's memory is
 * bounded by one (chunk, V) block whatever the sequence length and vocabulary.
 *
 *   hidden (B, T, d) ─ Reshape (N, d) ─ Pad to chunks·C ─ Reshape (chunks, C, d) ─┐
 *   labels (B, T)    ─ Reshape (N)    ─ Pad with ignore ─ Reshape (chunks, C) ────┴─ Scan:
 *       sum += Σ SoftmaxCrossEntropy(h_c W^T, l_c)                  (C, V) logits per iteration
 *   loss = sum / max(1, kept)
 *   backward (customGrad), r = g / max(1, kept):
 *       Scan: dh_c = (softmax(h_c W^T) - onehot(l_c)) · r · keep  @ W     (C, d) per iteration
 */
export function lmHeadCrossEntropy(
  hidden: Value, // (B, T, d) or (N, d)
  head: Value, // (V, d) frozen
  labels: Value, // (B, T) or (N) int64, ignoreIndex = no loss
  opts: Partial<LmLossOptions> = {},
): Value {
  const g = hidden.graph;
  const d = hidden.shape.at(-1);
  const vocab = head.shape[0];
  if (typeof d !== 'number' || typeof vocab !== 'number') {
    throw new Error(`lmHeadCrossEntropy: hidden ${hidden} and head ${head} need static d and V`);
  }
  const o = {
    chunk: opts.chunk ?? defaultChunk(vocab),
    ignoreIndex: opts.ignoreIndex ?? -100,
  } satisfies LmLossOptions;
  if (!(Number.isInteger(o.chunk) && o.chunk > 0))
    throw new Error(`lmHeadCrossEntropy: chunk ${o.chunk} must be a positive integer`);
  const C = o.chunk;
  const dtype = hidden.dtype;
  return g.scope('lm_loss', () => {
    const h = hidden.rank === 2 ? hidden : reshape(hidden, [-1, d]); // (N, d)
    const lab = labels.rank === 1 ? labels : reshape(labels, [-1]); // (N)
    const n = shapeOf(lab); // (1) int64
    const chunks = div(add(n, g.vector([C - 1])), g.vector([C])); // (1)
    const padRows = sub(mul(chunks, g.vector([C])), n); // (1)
    const rows = `${C}*chunks`;
    const hp = padRuntime(h, concat([g.vector([0, 0]), padRows, g.vector([0])], 0), g.scalar(0, dtype), [
      rows,
      d,
    ]);
    const lp = padRuntime(lab, concat([g.vector([0]), padRows], 0), g.scalar(o.ignoreIndex, 'int64'), [rows]);
    const hs = reshape(hp, [-1, C, d], 'Chunks'); // (chunks, C, d)
    const ls = reshape(lp, [-1, C], 'LabelChunks'); // (chunks, C)

    const ignored = equal(lab, g.scalar(o.ignoreIndex, 'int64')); // (N)
    const zero = g.scalar(0, dtype);
    const kept = reduceSum(where(ignored, zero, g.scalar(1, dtype)), undefined, { keepdims: false }); // ()
    const denominator = where(greater(kept, g.scalar(1, dtype)), kept, g.scalar(1, dtype)); // ()

    const forward = chunkBody(
      g,
      'lm_loss_forward',
      C,
      d,
      dtype,
      (body, hc, lc) => {
        const logits = matmul(hc, body.outer(head), { transB: true }); // (C, V)
        return [reduceSum(softmaxCrossEntropy(logits, lc, o.ignoreIndex), undefined, { keepdims: false })];
      },
      true,
    );
    const [total] = scan(g, { body: forward, states: [zero], scans: [hs, ls], name: 'ForwardChunks' });
    const loss = div(total!, denominator); // ()

    return customGrad(loss, [hidden], (gy) => {
      const r = div(gy, denominator); // ()
      const backward = chunkBody(g, 'lm_loss_backward', C, d, dtype, (body, hc, lc) => {
        const w = body.outer(head);
        const logits = matmul(hc, w, { transB: true }); // (C, V)
        const [, logProb] = body.emit(SOFTMAX_CROSS_ENTROPY, [logits, lc], {
          reduction: 'none',
          ignore_index: o.ignoreIndex,
        });
        const skip = equal(lc, body.scalar(o.ignoreIndex, 'int64')); // (C)
        const rowGrad = unsqueeze(where(skip, body.scalar(0, dtype), body.outer(r)), [-1]); // (C, 1)
        const column = unsqueeze(where(skip, body.scalar(0, 'int64'), lc), [-1]); // (C, 1)
        const dLogits = scatterElementsAdd(mul(exp(logProb!), rowGrad), column, neg(rowGrad), 1); // (C, V)
        return [matmul(dLogits, w)]; // (C, d)
      });
      const [stacked] = scan(g, {
        body: backward,
        states: [],
        scans: [hs, ls],
        outShapes: [['chunks', C, d]],
        name: 'BackwardChunks',
      });
      const flat = reshape(stacked!, [-1, d]); // (C*chunks, d)
      const dh = sliceRuntime(flat, g.vector([0]), n, [0], h.shape); // (N, d)
      return [reshapeAs(dh, hidden)];
    });
  });
}

/** A Scan body over (C, d) hidden rows and (C) labels, with an optional running sum as state. */
function chunkBody(
  g: Graph,
  name: string,
  C: number,
  d: number,
  dtype: Value['dtype'],
  fn: (body: Graph, hc: Value, lc: Value) => Value[],
  withSum = false,
): Graph {
  const body = new Graph({ name, opsets: g.options.opsets });
  body.scope(name, () => {
    const sumIn = withSum ? body.input(`${name}/sum_in`, dtype, []) : undefined;
    const hc = body.input(`${name}/hidden_chunk`, dtype, [C, d]);
    const lc = body.input(`${name}/labels_chunk`, 'int64', [C]);
    const outs = fn(body, hc, lc);
    if (sumIn) body.output(add(sumIn, outs[0]!), `${name}/sum_out`);
    else outs.forEach((v, i) => body.output(v, `${name}/out_${i}`));
  });
  return body;
}
