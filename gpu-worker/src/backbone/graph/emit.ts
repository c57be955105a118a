import {
  abs,
  add,
  after,
  concat,
  DEFAULT_SCORE_BLOCK,
  type ExternalDataWriter,
  Graph,
  gather,
  matmul,
  reduceMax,
  rotaryTables,
  shapeOf,
  sub,
  swiglu,
  toHalfClamped,
  type Value,
} from '../../graph/index.ts';
import { addQuantizedWeights, quantizedEmbedding, quantizedLinear } from '../quant/graph.ts';
import { quantizeLinear } from '../quant/quantize.ts';
import { type BackboneConfig, HF_NAMES, type TensorSource } from '../types.ts';
import { cachedAttention, forwardBias, type Rotary } from './attention.ts';
import { norms, rotaryCaches } from './fused.ts';
import { ropeInverseFrequencies } from './rope.ts';
import { transposeWeight, WeightPlacer } from './weights.ts';

/** How the linear layers are stored and multiplied. */
export type LinearKernel =
  | { kind: 'fp32' }
  | { kind: 'quantized'; bits: 4 | 8; blockSize: 32 | 64 | 128; accuracyLevel: 0 | 1 | 2 | 3 | 4 };

export interface BackboneGraphOptions {
  linear: LinearKernel;
  /** Which residual-stream taps b_0..b_L to output: every one, or these indices. */
  taps: 'all' | number[];
  /**
   * The taps' element type. float16 halves the memory of taps that live through a whole side-net
   * training step; values past its range are clamped to +-65504, and the graph then also outputs
   * `tap_absmax`, the largest |b_t| over the taps, for the caller to tell when that happened.
   */
  tapDtype: 'float32' | 'float16';
  /**
   * The token embedding and LM head: full precision, or 8-bit blockwise (MatMulNBits for the
   * head, GatherBlockQuantized for the lookup; a tied pair shares one table), or not in the graph
   * at all ('input': the caller feeds the looked-up rows as `inputs_embeds`, so a process that
   * already holds the table, as the LM head of a tied model, does not hold it twice; no logits).
   */
  embeddings: 'fp32' | 'int8' | 'input';
  /** onnxruntime's fused kernels (RMSNorm, residual add + RMSNorm, RoPE) instead of primitive ops. */
  fused: boolean;
  /**
   * Logits for generation: of every position, of the last one only (what decoding samples from,
   * without writing (T, V) at prefill), or none (the side network computes its own).
   */
  logits: 'all' | 'last' | 'none';
  /**
   * Attention over blocks of query rows holding at most this many scores each, so no (T, P+T)
   * score tensor per head is ever whole (chunkedAttention; DEFAULT_SCORE_BLOCK is 16 MB); 0: one
   * softmax over all of them.
   */
  scoreBlock: number;
  /**
   * 'long': blocks only for a call with more scores than scoreBlock, chosen at run time (a long
   * prompt's prefill; a decoding step has one query row, and the block loop would cost it ~5%).
   * 'always': every call, differentiable (passes over whole sequences: training, QLoRA).
   */
  blocks: 'long' | 'always';
  /**
   * The key/value cache inputs and outputs (generation). Off for a pass over whole sequences
   * (the side nets' training pass): no present tensors are written or kept alive.
   */
  kvCache: boolean;
}

export const BACKBONE_GRAPH_DEFAULTS: BackboneGraphOptions = {
  linear: { kind: 'quantized', bits: 4, blockSize: 32, accuracyLevel: 4 },
  taps: 'all',
  tapDtype: 'float32',
  embeddings: 'fp32',
  fused: true,
  logits: 'last',
  scoreBlock: DEFAULT_SCORE_BLOCK,
  blocks: 'long',
  kvCache: true,
};

const ROTARY_CACHE_MIN_ROWS = 8192;

/** Graph input and output names, shared with the generator and the side networks. */
export const IO = {
  inputIds: 'input_ids', // (batch, seq) int64
  inputsEmbeds: 'inputs_embeds', // (batch, seq, d) float32, instead of input_ids with embeddings 'input'
  attentionMask: 'attention_mask', // (batch, past+seq) int64, 1 = token
  positionIds: 'position_ids', // (batch, seq) int64
  pastKey: (i: number) => `past_key_values.${i}.key`, // (batch, kv_heads, past, head_dim)
  pastValue: (i: number) => `past_key_values.${i}.value`,
  presentKey: (i: number) => `present.${i}.key`, // (batch, kv_heads, past+seq, head_dim)
  presentValue: (i: number) => `present.${i}.value`,
  tap: (i: number) => `tap.${i}`, // (batch, seq, d) residual stream after block i (0 = embeddings)
  tapAbsMax: 'tap_absmax', // () float32, max |b_t| over the taps, with float16 taps
  finalHidden: 'final_hidden', // (batch, seq, d) Norm(b_L)
  logits: 'logits', // (batch, seq, vocab), or (batch, 1, vocab) for the last position only
} as const;

export interface LayerReport {
  name: string;
  relError: number;
}

/** x[:, T-1:T] for a run-time T: Gather along the sequence axis with a one-element index. */
export function lastPosition(x: Value): Value {
  const g = x.graph;
  const last = sub(shapeOf(x, 1, 2), g.vector([1])); // (1) int64: T - 1
  return gather(x, last, 1, 'LastPosition'); // (B, 1, d)
}

/** A linear layer y = x W^T (+ b) from an HF weight (N out, K in), as the options say. */
export type LinearEmitter = (x: Value, hfName: string, n: number, k: number, path: string) => Promise<Value>;

/** Which linear layer a hook is wrapping: its HF weight (N out, K in) and graph path. */
export interface LinearInfo {
  hfName: string;
  path: string; // e.g. `layers.0/attn/q_proj`
  n: number;
  k: number;
}

/**
 * Wraps each decoder linear layer (q, k, v, o, gate, up, down; not the LM head): returns what
 * replaces its output y (..., N) given its input x (..., K), e.g. y + LoRA(x). Emitted in the
 * layer's scope. A dependency, not an option: options key the build cache, code cannot.
 */
export type LinearHook = (x: Value, y: Value, info: LinearInfo) => Value;

/**
 * The backbone as one ONNX graph (DESIGN.md section 2): prefill and decode alike, the KV cache
 * in and out, every tap b_i out.
 *
 *   input_ids ─ Gather(embed) ─ b_0 ─┬─ tap.0
 *   per block i:  b_i = b_{i-1} + attn(rmsNorm(b_{i-1}), past_i) + mlp(rmsNorm(...)) ─ tap.i, present.i
 *   final_hidden = rmsNorm(b_L) ─ [logits = final_hidden @ lm_head]
 */
export async function buildBackboneGraph(
  cfg: BackboneConfig,
  source: TensorSource,
  opts: Partial<BackboneGraphOptions> = {},
  deps: { writer?: ExternalDataWriter; linearHook?: LinearHook } = {},
): Promise<{ graph: Graph; report: LayerReport[]; weightBytes: { linear: number; other: number } }> {
  const o = { ...BACKBONE_GRAPH_DEFAULTS, ...opts } satisfies BackboneGraphOptions;
  const g = new Graph({ name: `backbone-${cfg.architecture}`, opsets: { '': 21, 'com.microsoft': 1 } });
  const placer = new WeightPlacer(g, deps.writer);
  const report: LayerReport[] = [];
  const { hiddenSize: d, heads, kvHeads, headDim, intermediateSize: ff } = cfg;
  const tapSet = new Set(o.taps === 'all' ? Array.from({ length: cfg.layers + 1 }, (_, i) => i) : o.taps);
  for (const t of tapSet) {
    if (!Number.isInteger(t) || t < 0 || t > cfg.layers)
      throw new Error(`backbone taps: ${t} is not in 0..${cfg.layers}`);
  }

  const vector = async (name: string, path: string) => {
    const data = await source.read(name);
    return placer.place(path, 'float32', [data.length], data, 'other');
  };
  const lin: LinearEmitter = async (x, hfName, n, k, path) => {
    const y = await baseLinear(x, hfName, n, k, path);
    const hook = deps.linearHook;
    return hook ? g.scope(path, () => hook(x, y, { hfName, path, n, k })) : y;
  };
  const baseLinear: LinearEmitter = async (x, hfName, n, k, path) => {
    const w = await source.read(hfName); // (N, K)
    const scope = path.split('/').slice(0, -1).join('/');
    const name = path.split('/').at(-1);
    const kernel = o.linear;
    if (kernel.kind === 'fp32') {
      const wt = placer.place(`${path}.weight`, 'float32', [k, n], transposeWeight(w, n, k), 'linear');
      return g.scope(scope, () => matmul(x, wt, { name }));
    }
    const q = quantizeLinear(w, n, k, { bits: kernel.bits, blockSize: kernel.blockSize });
    report.push({ name: hfName, relError: q.relError });
    const weights = addQuantizedWeights(g, path, q, (init, dtype, dims, data) =>
      placer.place(init, dtype, dims, data, 'linear'),
    );
    return g.scope(scope, () =>
      quantizedLinear(x, q, weights, { accuracyLevel: kernel.accuracyLevel, name }),
    );
  };

  if (o.embeddings === 'input' && o.logits !== 'none') {
    throw new Error(`backbone graph: embeddings 'input' leaves the table out, so logits must be 'none'`);
  }
  const ids = o.embeddings === 'input' ? undefined : g.input(IO.inputIds, 'int64', ['batch', 'seq']);
  const mask = g.input(IO.attentionMask, 'int64', ['batch', o.kvCache ? 'past+seq' : 'seq']);
  const positions = g.input(IO.positionIds, 'int64', ['batch', 'seq']);
  // The embedding table (V, d) in HF layout; 8-bit tables double as a MatMulNBits LM head.
  const table = o.embeddings === 'input' ? undefined : await source.read(HF_NAMES.embed);
  const embedQ =
    table && o.embeddings === 'int8'
      ? quantizeLinear(table, cfg.vocabSize, d, { bits: 8, blockSize: 32 })
      : undefined;
  const embedQW = embedQ
    ? addQuantizedWeights(g, 'embed_tokens', embedQ, (init, dtype, dims, data) =>
        placer.place(init, dtype, dims, data, 'other'),
      )
    : undefined;
  const embed =
    embedQW || !table
      ? undefined
      : placer.place('embed_tokens', 'float32', [cfg.vocabSize, d], table, 'other');
  if (embedQ) report.push({ name: HF_NAMES.embed, relError: embedQ.relError });
  let x: Value; // (B, T, d) = b_0
  if (!ids) x = g.input(IO.inputsEmbeds, 'float32', ['batch', 'seq', d]);
  else {
    x = g.scope('embed', () =>
      embedQ && embedQW ? quantizedEmbedding(ids, embedQ, embedQW) : gather(embed!, ids),
    );
  }
  const absMaxes: Value[] = [];
  // Outputs tap i of b and returns `next`, the value the following layer reads first, read only
  // after the tap's float16 branch (|b| max, clip, cast): otherwise onnxruntime ran every branch
  // after the last layer, and all of b_0..b_L stayed alive in float32 to the end of the pass
  // (128 MB at 2k tokens, d=1024, 16 taps).
  const tap = (b: Value, i: number, next: Value): Value => {
    if (!tapSet.has(i)) return next;
    if (o.tapDtype === 'float32') {
      g.output(b, IO.tap(i));
      return next;
    }
    return g.scope(`tap.${i}`, () => {
      const absMax = reduceMax(abs(b)); // (1, 1, 1)
      absMaxes.push(absMax);
      const half = toHalfClamped(b);
      g.output(half, IO.tap(i));
      return after(next, [half, absMax]);
    });
  };
  x = tap(x, 0, x);
  const invFreq = ropeInverseFrequencies(cfg);
  let rotary: Rotary;
  if (o.fused) {
    // The fused kernel cannot extend its tables at run time: size them past the configured context
    // (RoPE itself extends to any position; 8192 rows of d_h/2 cost little).
    const rows = Math.max(cfg.maxPositions, ROTARY_CACHE_MIN_ROWS);
    const caches = rotaryCaches(invFreq, rows);
    const half = headDim / 2;
    rotary = {
      kind: 'fused',
      positions,
      cos: placer.place('rotary.cos_cache', 'float32', [rows, half], caches.cos, 'other'),
      sin: placer.place('rotary.sin_cache', 'float32', [rows, half], caches.sin, 'other'),
    };
  } else {
    rotary = { kind: 'tables', ...rotaryTables(positions, headDim, cfg.ropeTheta, { invFreq }) };
  }
  const longOnly = o.scoreBlock > 0 && o.blocks === 'long';
  const { bias, long } = forwardBias(x, mask, { heads, scoreBlock: o.scoreBlock, longOnly }); // (B, 1, 1, T|1, P+T)
  const nrm = norms(o.fused, cfg.rmsNormEps);

  //   h = norm(b_0);  per layer: attn(h) ─ (x1, h2) = addNorm(b, attn) ─ mlp(h2) ─ (b', h) = addNorm(x1, mlp)
  // where the second addNorm already applies the next layer's input norm (the final norm after the
  // last layer), so each residual add and the norm after it are one fused kernel.
  const firstNorm = await vector(HF_NAMES.layer(0).inputNorm, 'layers.0.input_layernorm');
  let h = g.scope('layers.0', () => nrm.norm(x, firstNorm, 'input_layernorm')); // (B, T, d)
  for (let i = 0; i < cfg.layers; i++) {
    const n = HF_NAMES.layer(i);
    const path = `layers.${i}`;
    const pastK = o.kvCache
      ? g.input(IO.pastKey(i), 'float32', ['batch', kvHeads, 'past', headDim])
      : undefined;
    const pastV = o.kvCache
      ? g.input(IO.pastValue(i), 'float32', ['batch', kvHeads, 'past', headDim])
      : undefined;
    const attnPath = `${path}/attn`;
    let q = await lin(h, n.q, heads * headDim, d, `${attnPath}/q_proj`);
    let k = await lin(h, n.k, kvHeads * headDim, d, `${attnPath}/k_proj`);
    let v = await lin(h, n.v, kvHeads * headDim, d, `${attnPath}/v_proj`);
    if (cfg.qkvBias) {
      const [bq, bk, bv] = [
        await vector(n.qBias, `${path}.q_bias`),
        await vector(n.kBias, `${path}.k_bias`),
        await vector(n.vBias, `${path}.v_bias`),
      ];
      [q, k, v] = g.scope(attnPath, () => [add(q, bq, 'q_bias'), add(k, bk, 'k_bias'), add(v, bv, 'v_bias')]);
    }
    const qNorm = cfg.qkNorm ? await vector(n.qNorm, `${path}.q_norm`) : undefined;
    const kNorm = cfg.qkNorm ? await vector(n.kNorm, `${path}.k_norm`) : undefined;
    const attn = g.scope(attnPath, () =>
      cachedAttention(
        { q, k, v, pastK, pastV, rotary, bias, long, qNorm, kNorm },
        {
          heads,
          kvHeads,
          headDim,
          eps: cfg.rmsNormEps,
          scoreBlock: o.scoreBlock,
          longOnly,
        },
      ),
    );
    if (o.kvCache) {
      g.output(attn.presentK, IO.presentKey(i));
      g.output(attn.presentV, IO.presentValue(i));
    }
    const o1 = await lin(attn.out, n.o, d, heads * headDim, `${attnPath}/o_proj`);
    const postNorm = await vector(n.postAttnNorm, `${path}.post_attention_layernorm`);
    const mid = g.scope(path, () => nrm.addNorm(x, o1, postNorm, 'post_attention_layernorm'));
    const gate = await lin(mid.normed, n.gate, ff, d, `${path}/mlp/gate_proj`);
    const up = await lin(mid.normed, n.up, ff, d, `${path}/mlp/up_proj`);
    const act = g.scope(`${path}/mlp`, () => swiglu(gate, up)); // (B, T, d_ff) silu(gate) * up
    const down = await lin(act, n.down, d, ff, `${path}/mlp/down_proj`);
    const last = i === cfg.layers - 1;
    const nextNorm = last
      ? await vector(HF_NAMES.finalNorm, 'norm')
      : await vector(HF_NAMES.layer(i + 1).inputNorm, `layers.${i + 1}.input_layernorm`);
    const out = g.scope(path, () =>
      nrm.addNorm(mid.sum, down, nextNorm, last ? 'final_norm' : 'next_input_layernorm'),
    );
    x = out.sum; // (B, T, d) = b_{i+1}
    h = tap(x, i + 1, out.normed); // the next layer's normed input; after the last layer, Norm(b_L)
  }
  if (absMaxes.length) g.output(reduceMax(concat(absMaxes, 0), undefined, { keepdims: false }), IO.tapAbsMax);

  const hidden = h; // (B, T, d)
  g.output(hidden, IO.finalHidden);
  if (o.logits !== 'none') {
    // The LM head, (V, d) as HF stores it (tied: the embedding table itself), multiplied
    // transposed inside the GEMM rather than copied; or the 8-bit table through MatMulNBits.
    let headQ = embedQ && cfg.tieWordEmbeddings ? { q: embedQ, w: embedQW! } : undefined;
    let headF: Value | undefined = cfg.tieWordEmbeddings ? embed : undefined;
    if (!cfg.tieWordEmbeddings) {
      const w = await source.read(HF_NAMES.lmHead);
      if (o.embeddings === 'int8') {
        const q = quantizeLinear(w, cfg.vocabSize, d, { bits: 8, blockSize: 32 });
        report.push({ name: HF_NAMES.lmHead, relError: q.relError });
        headQ = {
          q,
          w: addQuantizedWeights(g, 'lm_head', q, (init, dtype, dims, data) =>
            placer.place(init, dtype, dims, data, 'other'),
          ),
        };
      } else {
        headF = placer.place('lm_head', 'float32', [cfg.vocabSize, d], w, 'other');
      }
    }
    const logits = g.scope('lm_head', () => {
      const rows = o.logits === 'all' ? hidden : lastPosition(hidden); // (B, T|1, d)
      return headQ
        ? quantizedLinear(rows, headQ.q, headQ.w, { accuracyLevel: 4, name: 'MatMulNBits' })
        : matmul(rows, headF!, { transB: true }); // (B, T|1, V)
    });
    g.output(logits, IO.logits);
  }
  return { graph: g, report, weightBytes: placer.bytes };
}
