import {
  add,
  concat,
  customGrad,
  div,
  equal,
  exp,
  Graph,
  greater,
  logicalNot,
  logSoftmax,
  matmul,
  mul,
  neg,
  padRuntime,
  reduceMax,
  reduceSum,
  reshape,
  reshapeAs,
  scan,
  shapeOf,
  sliceRuntime,
  sub,
  unsqueeze,
  type Value,
  where,
} from '../graph/index.ts';
import { gatherElements, scatterElementsAdd } from '../graph/ops/gather-elements.ts';

export interface LmLossOptions {
  /** Tokens per chunk: the loss never holds more than (chunk, V) logits at once. */
  chunk: number;
  ignoreIndex: number;
  /** Also compute d loss / d hidden (training); evaluation leaves it out. */
  gradient: boolean;
}

/** A chunk whose (chunk, V) float32 logits take about 32 MB, at least 16 tokens. */
export function defaultChunk(vocab: number): number {
  return Math.max(16, Math.min(4096, Math.floor((32 * 2 ** 20) / (4 * vocab) / 16) * 16));
}

/**
 * Mean next-token cross-entropy of LMHead(hidden) over the labelled tokens, without ever
 * materialising the (T, V) logits: rows go through the frozen head in chunks (an ONNX Scan), and
 * each chunk's gradient is computed in the same pass instead of keeping its logits, so the loss's memory is
 * bounded by one (chunk, V) block whatever the sequence length and vocabulary.
 *
 *   hidden (B, T, d) ─ Reshape (N, d) ─ Pad to chunks·C ─ Reshape (chunks, C, d) ─┐
 *   labels (B, T)    ─ Reshape (N)    ─ Pad with ignore ─ Reshape (chunks, C) ────┴─ Scan:
 *       sum += -Σ LogSoftmax(h_c W^T)[l_c]   (labelled rows)        (C, V) logits per iteration
 *       U_c = ((softmax(h_c W^T) - onehot(l_c)) · keep) @ W                (C, d) per iteration
 *   loss = sum / max(1, kept)
 *   backward (customGrad): d loss / d hidden = U · g / max(1, kept)
 */
export function lmHeadCrossEntropy(
  hidden: Value, // (B, T, d) or (N, d)
  head: Value, // (V, d) frozen
  labels: Value, // (B, T) or (N) int64, ignoreIndex = no loss
  opts: Partial<LmLossOptions> = {},
): Value {
  return lmHeadLoss(hidden, head, labels, opts).loss;
}

/**
 * lmHeadCrossEntropy, and how many labelled tokens the head predicts exactly (their label's
 * log-probability is the row's largest; a tie counts as right), a float scalar summed over the
 * chunks. The count has no gradient: it reads the logits the loss computes anyway.
 */
export function lmHeadLoss(
  hidden: Value, // (B, T, d) or (N, d)
  head: Value, // (V, d) frozen
  labels: Value, // (B, T) or (N) int64, ignoreIndex = no loss
  opts: Partial<LmLossOptions> = {},
): { loss: Value; correct: Value; targets: Value } {
  const g = hidden.graph;
  const d = hidden.shape.at(-1);
  const vocab = head.shape[0];
  if (typeof d !== 'number' || typeof vocab !== 'number') {
    throw new Error(`lmHeadCrossEntropy: hidden ${hidden} and head ${head} need static d and V`);
  }
  const o = {
    chunk: opts.chunk ?? defaultChunk(vocab),
    ignoreIndex: opts.ignoreIndex ?? -100,
    gradient: opts.gradient ?? true,
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

    // One pass per chunk computes its loss and, for training, its unscaled gradient
    //   U_c = ((softmax(h_c W^T) - onehot(l_c)) * keep) @ W        (C, d)
    // so the backward only scales U by g / max(1, kept): the head is multiplied twice per chunk
    // (logits, then U), never three times, and no (C, V) block outlives its iteration.
    const forward = chunkBody(g, 'lm_loss_chunk', C, d, dtype, (body, hc, lc) => {
      const zeroF = body.scalar(0, dtype);
      const oneF = body.scalar(1, dtype);
      const w = body.outer(head);
      const skip = equal(lc, body.scalar(o.ignoreIndex, 'int64')); // (C)
      const keep = unsqueeze(where(skip, zeroF, oneF), [-1]); // (C, 1)
      const column = unsqueeze(where(skip, body.scalar(0, 'int64'), lc), [-1]); // (C, 1)
      // LogSoftmax over the last axis of the (C, V) logits, and the label's entry picked out. Not
      // SoftmaxCrossEntropyLoss: onnxruntime expands it into a LogSoftmax over axis 1 of (C, V, 1),
      // which it runs through transposed copies, two more (C, V) blocks at the chunk's peak.
      const logProb = logSoftmax(matmul(hc, w, { transB: true })); // (C, V)
      const picked = gatherElements(logProb, column, 1); // (C, 1)
      const nll = mul(neg(picked), keep); // (C, 1), 0 where ignored
      const sum = reduceSum(nll, undefined, { keepdims: false }); // ()
      const best = reduceMax(logProb, [1], { keepdims: true }); // (C, 1)
      const right = mul(where(logicalNot(greater(best, picked)), oneF, zeroF), keep); // (C, 1)
      const correct = reduceSum(right, undefined, { keepdims: false }); // ()
      if (!o.gradient) return [sum, correct];
      const dLogits = scatterElementsAdd(mul(exp(logProb), keep), column, neg(keep), 1); // (C, V)
      return [sum, correct, matmul(dLogits, w)]; // (), (), (C, d)
    });
    const [total, correct, stacked] = scan(g, {
      body: forward,
      states: [zero, zero],
      scans: [hs, ls],
      outShapes: o.gradient ? [['chunks', C, d]] : [],
      name: 'Chunks',
    });
    const loss = div(total!, denominator); // ()
    if (!o.gradient) return { loss, correct: correct!, targets: kept };

    const trained = customGrad(loss, [hidden], (gy) => {
      const flat = reshape(stacked!, [-1, d]); // (C*chunks, d)
      const unscaled = sliceRuntime(flat, g.vector([0]), n, [0], h.shape); // (N, d)
      return [reshapeAs(mul(unscaled, div(gy, denominator)), hidden)];
    });
    return { loss: trained, correct: correct!, targets: kept };
  });
}

/**
 * A Scan body over (C, d) hidden rows and (C) labels: two running sums (the first two outputs:
 * the loss, the correct count), then per-chunk outputs.
 */
function chunkBody(
  g: Graph,
  name: string,
  C: number,
  d: number,
  dtype: Value['dtype'],
  fn: (body: Graph, hc: Value, lc: Value) => Value[],
): Graph {
  const body = new Graph({ name, opsets: g.options.opsets });
  body.scope(name, () => {
    const sumIn = body.input(`${name}/sum_in`, dtype, []);
    const correctIn = body.input(`${name}/correct_in`, dtype, []);
    const hc = body.input(`${name}/hidden_chunk`, dtype, [C, d]);
    const lc = body.input(`${name}/labels_chunk`, 'int64', [C]);
    const [sum, correct, ...outs] = fn(body, hc, lc);
    body.output(add(sumIn, sum!), `${name}/sum_out`);
    body.output(add(correctIn, correct!), `${name}/correct_out`);
    for (const [i, v] of outs.entries()) body.output(v, `${name}/out_${i}`);
  });
  return body;
}
