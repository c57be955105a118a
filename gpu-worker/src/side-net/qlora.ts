import {
  BACKBONE_GRAPH_DEFAULTS,
  buildBackboneGraph,
  IO,
  type LayerReport,
  type LinearHook,
  type LinearKernel,
} from '../backbone/graph/emit.ts';
import { type BackboneConfig, HF_NAMES, type TensorSource } from '../backbone/types.ts';
import { shapeEq } from '../graph/dims.ts';
import {
  type AdamWOptions,
  add,
  type BatchSpec,
  buildTrainStep,
  concat,
  DEFAULT_SCORE_BLOCK,
  type Graph,
  GraphError,
  initializerCopier,
  inlineGraph,
  inlineNodes,
  type LossFn,
  matmul,
  type Node,
  type OpDef,
  type ParamSpec,
  recompute,
  type Shape,
  scale,
  shapeOf,
  shapeStr,
  type TrainLayout,
  type TrainStepSpec,
  type Value,
} from '../graph/index.ts';
import { EXPAND } from '../graph/ops/shape.ts';
import { Rng } from '../util/rng.ts';
import { lmHeadCrossEntropy } from './loss.ts';

/**
 * The QLoRA baseline (DESIGN.md section 2; QLoRA https://arxiv.org/abs/2305.14314, LoRA
 * https://arxiv.org/abs/2106.09685): the same frozen 4-bit backbone, with a low-rank update on
 * every decoder linear layer,
 *
 *   y = MatMulNBits(x) + (alpha / r) (x A) B        A (K, r) random, B (r, N) zero: step 0 = backbone
 *
 * and the backward through every block (MatMulNBits' vjp dequantizes W one layer at a time). It
 * exists only to be measured side by side with the side networks, in the same trainer.
 */

export type LoraTarget = 'q_proj' | 'k_proj' | 'v_proj' | 'o_proj' | 'gate_proj' | 'up_proj' | 'down_proj';

export const LORA_TARGETS: readonly LoraTarget[] = [
  'q_proj',
  'k_proj',
  'v_proj',
  'o_proj',
  'gate_proj',
  'up_proj',
  'down_proj',
];

export interface QloraOptions {
  rank: number;
  /** The update is scaled by alpha / rank. */
  alpha: number;
  /** The backbone's linear layers: 4-bit MatMulNBits as the served backbone by default. */
  kernel: LinearKernel;
  /** Tokens per chunk of the LM-head loss; undefined: lmHeadCrossEntropy's default (~32 MB of logits). */
  lossChunk: number | undefined;
  targets: readonly LoraTarget[];
  /** Seed of the A matrices. */
  seed: number;
  /**
   * Per-block gradient checkpointing, as a QLoRA user turns it on (transformers'
   * gradient_checkpointing_enable): the step keeps each block's input b_i, not the block's
   * activations, and runs the block again in the backward (inlineCheckpointed).
   */
  gradientCheckpointing: boolean;
  optim: Partial<AdamWOptions>;
}

export const QLORA_DEFAULTS: QloraOptions = {
  rank: 16,
  alpha: 32,
  kernel: BACKBONE_GRAPH_DEFAULTS.linear,
  lossChunk: undefined,
  targets: LORA_TARGETS,
  seed: 0,
  gradientCheckpointing: false,
  optim: {},
};

/** Batch inputs of the QLoRA step; labels are next-token targets aligned with input_ids. */
export const QLORA_IO = {
  inputIds: IO.inputIds, // (batch, seq) int64
  labels: 'labels', // (batch, seq) int64, -100 = no loss
  attentionMask: IO.attentionMask, // (batch, seq) int64, 1 = token
  positionIds: IO.positionIds, // (batch, seq) int64
} as const;

/** A TrainStepSpec (for buildTrainStep or buildGradAccumulation) plus the initial LoRA weights. */
export interface QloraSpec extends TrainStepSpec {
  init: Record<string, Float32Array>;
  /** Quantization error of every backbone linear layer. */
  report: LayerReport[];
}

/** `model.layers.0.self_attn.q_proj.weight` -> `model.layers.0.self_attn.q_proj.lora_A`. */
export function loraName(hfName: string, which: 'A' | 'B'): string {
  return `${hfName.replace(/\.weight$/, '')}.lora_${which}`;
}

/**
 * The QLoRA training step as a spec: params = every LoRA A and B; batch = input_ids, labels,
 * attention_mask, position_ids; the backbone's weights are frozen initializers. The backbone is
 * built once (primitive ops: the fused kernels have no gradients, and no past cache: it is fed an
 * empty one inside the graph) and inlined into each graph the spec's loss is asked for.
 */
export async function qloraSpec(
  cfg: BackboneConfig,
  source: TensorSource,
  opts: Partial<QloraOptions> = {},
): Promise<QloraSpec> {
  const o = { ...QLORA_DEFAULTS, ...opts } satisfies QloraOptions;
  checkOptions(o);
  const params: ParamSpec[] = [];
  const hook: LinearHook = (x, y, info) => {
    if (!o.targets.includes(info.path.split('/').at(-1) as LoraTarget)) return y;
    const src = x.graph;
    const a = src.input(loraName(info.hfName, 'A'), 'float32', [info.k, o.rank]);
    const b = src.input(loraName(info.hfName, 'B'), 'float32', [o.rank, info.n]);
    params.push({ name: a.name, shape: [info.k, o.rank] }, { name: b.name, shape: [o.rank, info.n] });
    return src.scope('lora', () => {
      const down = scale(matmul(x, a, { name: 'A' }), o.alpha / o.rank, 'Scale'); // (..., r)
      return add(y, matmul(down, b, { name: 'B' }), 'Add'); // (..., N)
    });
  };
  const { graph: backbone, report } = await buildBackboneGraph(
    cfg,
    source,
    {
      linear: o.kernel,
      fused: false,
      // Checkpointing finds the blocks' boundaries b_0..b_L by the taps (outputs only: the graph
      // computes the same either way).
      taps: o.gradientCheckpointing ? 'all' : [],
      logits: 'none',
      embeddings: 'fp32',
      scoreBlock: DEFAULT_SCORE_BLOCK, // the side nets' training pass attends the same way
      blocks: 'always',
    },
    { linearHook: hook },
  );
  const untiedHead = cfg.tieWordEmbeddings ? undefined : await source.read(HF_NAMES.lmHead); // (V, d)
  const seq = ['batch', 'seq'];
  const batch: BatchSpec[] = [
    { name: QLORA_IO.inputIds, dtype: 'int64', shape: seq },
    { name: QLORA_IO.labels, dtype: 'int64', shape: seq },
    { name: QLORA_IO.attentionMask, dtype: 'int64', shape: seq },
    { name: QLORA_IO.positionIds, dtype: 'int64', shape: seq },
  ];

  const loss: LossFn = (g, p, b) => {
    const ids = b[QLORA_IO.inputIds]!;
    let emptyPast: Value | undefined;
    const bind = (input: Value): Value => {
      if (input.name.startsWith('past_key_values.')) {
        emptyPast ??= g.scope('empty_past', () => emptyLike(input, ids));
        return emptyPast;
      }
      const v = p[input.name] ?? b[input.name];
      if (!v) throw new GraphError(`qlora: nothing feeds the backbone input ${input}`);
      return shapeEq(v.shape, input.shape) ? v : relabel(v, input.shape);
    };
    const inlined = g.scope('backbone', () =>
      o.gradientCheckpointing
        ? inlineCheckpointed(g, backbone, cfg.layers, bind)
        : inlineGraph(g, backbone, bind),
    );
    const hidden = inlined(backbone.get(IO.finalHidden)); // (B, T, d)
    const head = untiedHead
      ? g.initializer('lm_head', 'float32', [cfg.vocabSize, cfg.hiddenSize], untiedHead)
      : inlined(backbone.get('embed_tokens')); // (V, d)
    const chunk = o.lossChunk === undefined ? {} : { chunk: o.lossChunk };
    return lmHeadCrossEntropy(hidden, head, b[QLORA_IO.labels]!, chunk);
  };
  return { params, batch, loss, optim: o.optim, init: initLora(params, o.seed), report };
}

/** The one-model QLoRA training step, and the initial LoRA weights to start a TrainRunner with. */
export async function buildQloraTrainStep(
  cfg: BackboneConfig,
  source: TensorSource,
  opts: Partial<QloraOptions> = {},
): Promise<{ graph: Graph; layout: TrainLayout; init: Record<string, Float32Array>; report: LayerReport[] }> {
  const spec = await qloraSpec(cfg, source, opts);
  return { ...buildTrainStep(spec), init: spec.init, report: spec.report };
}

/**
 * A: Kaiming-uniform as PEFT initialises it (a = sqrt(5): U(-1/sqrt(K), 1/sqrt(K))); B: zeros, so
 * the update starts at exactly 0.
 */
function initLora(params: readonly ParamSpec[], seed: number): Record<string, Float32Array> {
  const rng = new Rng(seed);
  const init: Record<string, Float32Array> = {};
  for (const { name, shape } of params) {
    const data = new Float32Array(shape[0]! * shape[1]!);
    if (name.endsWith('.lora_A')) {
      const bound = 1 / Math.sqrt(shape[0]!);
      for (let i = 0; i < data.length; i++) data[i] = (rng.next() * 2 - 1) * bound;
    }
    init[name] = data;
  }
  return init;
}

function checkOptions(o: QloraOptions): void {
  const bad: string[] = [];
  if (!Number.isInteger(o.rank) || o.rank < 1) bad.push(`rank must be a positive integer, got ${o.rank}`);
  if (!(o.alpha > 0)) bad.push(`alpha must be > 0, got ${o.alpha}`);
  if (o.targets.length === 0) bad.push('no LoRA targets');
  for (const t of o.targets) if (!LORA_TARGETS.includes(t)) bad.push(`unknown LoRA target '${t}'`);
  if (o.lossChunk !== undefined && !(Number.isInteger(o.lossChunk) && o.lossChunk > 0))
    bad.push(`lossChunk must be a positive integer, got ${o.lossChunk}`);
  if (bad.length) throw new GraphError(`qlora options: ${bad.join('; ')}`);
}

// ---------------------------------------------------------------------------------------------
// Inlining the backbone graph into a training step

/**
 * The backbone inlined with every block under `recompute` (per-block gradient checkpointing):
 *
 *   b_0 ─[block 0]─ b_1 ─[block 1]─ ... ─[block L-1]─ b_L ─ Norm ─ final_hidden
 *         recompute    recompute             recompute
 *
 * The step keeps b_0..b_{L-1} (B x T x d each) and the prefix's values (rotary tables, attention
 * bias); each block's own activations live only while its backward runs. Block i is every node
 * that depends on b_i but not on b_{i+1} (b_i = the backbone's tap i, so the graph must output
 * every tap); nodes that depend on no tap (embedding lookup, bias, tables) come first, those on
 * b_L (the final norm) last. Only b_{i+1} may leave block i: a block whose other values are read
 * later could not be recomputed alone, and is reported.
 */
function inlineCheckpointed(
  g: Graph,
  backbone: Graph,
  layers: number,
  bind: (input: Value) => Value,
): (v: Value) => Value {
  const producer = new Map(backbone.nodes.flatMap((n) => n.outputs.map((o) => [o, n] as const)));
  const boundary: Value[] = []; // b_0..b_L
  for (let i = 0; i <= layers; i++) {
    const tap = producer.get(backbone.get(IO.tap(i)));
    if (!tap) throw new GraphError(`qlora checkpointing: the backbone graph has no tap ${i}`);
    boundary.push(tap.inputs[0]!);
  }
  const boundaryIndex = new Map(boundary.map((b, i) => [b, i]));

  // level: the last boundary a value depends on (-1: none); a node's is the max of what it reads.
  const level = new Map<Value, number>();
  const pieces: Node[][] = Array.from({ length: layers + 2 }, () => []); // [prefix, block 0.., suffix]
  const levelOf = new Map<Node, number>();
  for (const node of backbone.nodes) {
    const at = Math.max(-1, ...nodeReads(backbone, node).map((v) => level.get(v) ?? -1));
    levelOf.set(node, at);
    pieces[at + 1]!.push(node);
    for (const o of node.outputs) level.set(o, boundaryIndex.get(o) ?? at);
  }
  for (const node of backbone.nodes) {
    const at = levelOf.get(node)!;
    for (const v of nodeReads(backbone, node)) {
      const from = producer.get(v);
      const block = from ? levelOf.get(from)! : -1;
      if (block >= 0 && block < layers && block !== at && v !== boundary[block + 1])
        throw new GraphError(
          `qlora checkpointing: ${v} of block ${block} is read outside it (by ${node.name})`,
        );
    }
  }

  const initializer = initializerCopier(g, backbone);
  const bound = new Map(backbone.inputs.map((v) => [v, bind(v)]));
  const made = new Map<Value, Value>(); // backbone values that pieces share, as g's
  const shared = (v: Value): Value => {
    const found = made.get(v) ?? initializer(v) ?? bound.get(v);
    if (!found) throw new GraphError(`qlora checkpointing: nothing gives ${v} to the block reading it`);
    return found;
  };
  const plain = (nodes: readonly Node[]): ((v: Value) => Value) => {
    const get = inlineNodes(g, backbone, nodes, shared);
    for (const n of nodes) for (const o of n.outputs) made.set(o, get(o));
    return get;
  };
  plain(pieces[0]!);
  for (let i = 0; i < layers; i++) {
    const [input, output] = [boundary[i]!, boundary[i + 1]!];
    const block = pieces[i + 1]!;
    made.set(
      output,
      recompute(made.get(input)!, (x) =>
        inlineNodes(g, backbone, block, (v) => (v === input ? x : shared(v)))(output),
      ),
    ); // (B, T, d) = b_{i+1}
  }
  return plain(pieces[layers + 1]!);
}

/** What a node reads: its inputs, and the enclosing values its bodies (Scan) refer to by name. */
function nodeReads(graph: Graph, node: Node): Value[] {
  const reads = [...node.inputs];
  for (const a of Object.values(node.attrs)) {
    if (typeof a === 'object' && a !== null && 'subgraph' in a)
      for (const name of enclosingNames(a.subgraph)) reads.push(graph.get(name));
  }
  return reads;
}

/** Names a body reads that it neither makes nor takes as input nor holds as initializers. */
function enclosingNames(body: Graph): Set<string> {
  const own = new Set([
    ...body.inputs.map((v) => v.name),
    ...body.initializers.map((i) => i.value.name),
    ...body.nodes.flatMap((n) => n.outputs.map((o) => o.name)),
  ]);
  const names = new Set<string>();
  for (const node of body.nodes) {
    for (const v of node.inputs) if (!own.has(v.name)) names.add(v.name);
    for (const a of Object.values(node.attrs)) {
      if (typeof a === 'object' && a !== null && 'subgraph' in a)
        for (const n of enclosingNames(a.subgraph)) if (!own.has(n)) names.add(n);
    }
  }
  return names;
}

/** The same tensor under other (equal at run time) symbolic dims: (batch, seq) as (batch, past+seq). */
const RELABEL: OpDef = {
  type: 'Identity',
  infer: ([x], _attrs, hints) => [{ dtype: x!.dtype, shape: hints![0]! }],
  vjp: ({ grads }) => [grads[0]],
};

function relabel(v: Value, shape: Shape): Value {
  if (v.rank !== shape.length) throw new GraphError(`qlora: ${v} cannot stand for ${shapeStr(shape)}`);
  return v.graph.op(RELABEL, [v], {}, { name: 'Relabel', hints: [shape] });
}

/** An empty past cache (batch, H_kv, 0, d_h) for the backbone's past input `like`. */
function emptyLike(like: Value, ids: Value): Value {
  const g = ids.graph;
  const [, heads, , dim] = like.shape as [unknown, number, unknown, number];
  const empty = g.constant('float32', [1, heads, 0, dim], new Float32Array(0));
  const shape = concat([shapeOf(ids, 0, 1), g.vector([heads, 0, dim])], 0); // (4) int64
  const past = g.op(EXPAND, [empty, shape], {}, { hints: [[like.shape[0]!, heads, 0, dim]] }); // (B, H_kv, 0, d_h)
  return relabel(past, like.shape); // (batch, H_kv, past, d_h)
}
