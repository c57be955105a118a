import { describe, expect, it } from 'vitest';
import { buildBackboneGraph, IO, type LinearKernel } from '../../../gpu-worker/src/backbone/graph/emit.ts';
import type { BackboneConfig } from '../../../gpu-worker/src/backbone/types.ts';
import { Graph, grad, inPlaceProblems, toModelBytes } from '../../../gpu-worker/src/graph/index.ts';
import { createSession, f32, i64, type Tensor, TrainRunner } from '../../../gpu-worker/src/runtime/index.ts';
import {
  buildQloraTrainStep,
  LORA_TARGETS,
  loraName,
  QLORA_IO,
  type QloraSpec,
  qloraSpec,
} from '../../../gpu-worker/src/side-net/qlora.ts';
import { Rng } from '../../../gpu-worker/src/util/rng.ts';
import { emptyPast, memorySource, randomWeights, VARIANTS } from '../../helpers/tiny-backbone.ts';

// The QLoRA baseline checked against independent references: central differences of its own loss
// for the gradients, the plain backbone (no LoRA) plus a float64 JS cross-entropy for step 0.

const LLAMA = VARIANTS['llama (GQA, llama3 rope scaling)']!;
// accuracy level 0: activations stay float, so the loss is smooth in the LoRA weights
const EXACT_4BIT: LinearKernel = { kind: 'quantized', bits: 4, blockSize: 32, accuracyLevel: 0 };

/** Two sequences, the second left-padded by two (mask 0, label -100); labels are the next tokens. */
function batchOf(T: number, seed: number) {
  const rng = new Rng(seed);
  const B = 2;
  const pad = 2;
  const ids: number[] = [];
  const labels: number[] = [];
  const mask: number[] = [];
  const positions: number[] = [];
  for (let b = 0; b < B; b++) {
    const start = b === 1 ? pad : 0;
    const row = Array.from({ length: T + 1 }, () => 1 + rng.int(59));
    for (let t = 0; t < T; t++) {
      const real = t >= start;
      ids.push(real ? row[t]! : 0);
      labels.push(real ? row[t + 1]! : -100);
      mask.push(real ? 1 : 0);
      positions.push(real ? t - start : 0);
    }
  }
  labels[3] = -100; // a prompt token inside a sequence
  const feeds: Record<string, Tensor> = {
    [QLORA_IO.inputIds]: i64(ids, [B, T]),
    [QLORA_IO.labels]: i64(labels, [B, T]),
    [QLORA_IO.attentionMask]: i64(mask, [B, T]),
    [QLORA_IO.positionIds]: i64(positions, [B, T]),
  };
  return { B, T, ids, labels, mask, positions, feeds };
}

/** loss and d loss / d `wrt` of the QLoRA loss, as one ONNX model with every LoRA weight an input. */
async function lossModel(
  cfg: BackboneConfig,
  seed: number,
  which: string[] | 'all',
  opts: Parameters<typeof qloraSpec>[2],
) {
  const spec = await qloraSpec(cfg, memorySource(randomWeights(cfg, seed)), opts);
  const wrt = which === 'all' ? spec.params.map((p) => p.name) : which;
  const g = new Graph({ name: 'qlora_check' });
  const params = Object.fromEntries(spec.params.map((p) => [p.name, g.input(p.name, 'float32', p.shape)]));
  const batch = Object.fromEntries(spec.batch.map((b) => [b.name, g.input(b.name, b.dtype, b.shape)]));
  const out = g.scope('loss', () => spec.loss(g, params, batch));
  const loss = 'loss' in out ? out.loss : out; // QLoRA's loss has no metrics; either form is a loss
  g.output(loss, 'loss');
  const grads = grad(
    loss,
    wrt.map((n) => params[n]!),
  );
  for (const [i, gr] of grads.entries()) g.output(gr, `grad.${wrt[i]}`);
  return { spec, wrt, session: await createSession(toModelBytes(g)) };
}

describe('QLoRA: LoRA on every linear layer of the 4-bit backbone', () => {
  it('has rank-r A (K, r) and B (r, N) on q, k, v, o, gate, up, down of every layer; B starts at 0', async () => {
    const cfg = LLAMA;
    const { graph, layout, init } = await buildQloraTrainStep(cfg, memorySource(randomWeights(cfg, 1)), {
      rank: 4,
    });
    expect(layout.params).toHaveLength(cfg.layers * LORA_TARGETS.length * 2);
    expect(inPlaceProblems(graph, layout.next), 'updates may be written in place').toEqual([]);
    expect(layout.inPlace).toBe(true);
    expect(layout.batch.map((b) => b.name)).toEqual([
      'input_ids',
      'labels',
      'attention_mask',
      'position_ids',
    ]);
    const d = cfg.hiddenSize;
    const q = cfg.heads * cfg.headDim;
    const kv = cfg.kvHeads * cfg.headDim;
    const ff = cfg.intermediateSize;
    const shapes = Object.fromEntries(layout.params.map((p) => [p.name, p.shape]));
    expect(shapes[loraName('model.layers.0.self_attn.q_proj.weight', 'A')]).toEqual([d, 4]);
    expect(shapes[loraName('model.layers.0.self_attn.q_proj.weight', 'B')]).toEqual([4, q]);
    expect(shapes['model.layers.1.self_attn.k_proj.lora_B']).toEqual([4, kv]);
    expect(shapes['model.layers.1.self_attn.o_proj.lora_A']).toEqual([q, 4]);
    expect(shapes['model.layers.1.mlp.down_proj.lora_A']).toEqual([ff, 4]);
    expect(shapes['model.layers.1.mlp.up_proj.lora_B']).toEqual([4, ff]);
    for (const p of layout.params) {
      const values = init[p.name]!;
      if (p.name.endsWith('lora_B')) expect(values.every((v) => v === 0)).toBe(true);
      else {
        // Kaiming-uniform: U(-1/sqrt(K), 1/sqrt(K)), seeded
        const bound = 1 / Math.sqrt(p.shape[0]!);
        expect(Math.max(...values.map(Math.abs))).toBeLessThanOrEqual(bound);
        expect(Math.max(...values.map(Math.abs))).toBeGreaterThan(0.8 * bound);
      }
    }
    const ops = new Set(graph.nodes.map((n) => n.op.type));
    expect(ops.has('MatMulNBits')).toBe(true);
    expect(ops.has('BitShift')).toBe(true); // the backward dequantizes the 4-bit weights
    expect(ops.has('SkipSimplifiedLayerNormalization')).toBe(false); // primitive ops only
    expect(ops.has('RotaryEmbedding')).toBe(false);
    // W dequantized once per linear layer whose input needs a gradient: all but layer 0's q, k
    // and v, which read the embeddings (their LoRA A gradients need x, not dx)
    const dequantized = graph.nodes.filter((n) => n.name.endsWith('/Dequantize/MulScale')).length;
    expect(dequantized).toBe(cfg.layers * LORA_TARGETS.length - 3);
  });

  it('gradcheck: d loss / d LoRA weights in layers 0 and 1 vs central differences (float32, eps 1e-2, 1% of max|grad|)', async () => {
    const cfg = LLAMA;
    const wrt = [
      'model.layers.0.self_attn.q_proj.lora_A',
      'model.layers.0.self_attn.o_proj.lora_B',
      'model.layers.1.mlp.gate_proj.lora_A',
      'model.layers.1.mlp.down_proj.lora_B',
    ];
    const { spec, session } = await lossModel(cfg, 2, wrt, { rank: 2, alpha: 4, kernel: EXACT_4BIT });
    // B nonzero so that gradients reach A; A larger than its init so the update matters
    const rng = new Rng(3);
    const values = Object.fromEntries(
      spec.params.map((p) => [
        p.name,
        Float32Array.from({ length: p.shape[0]! * p.shape[1]! }, () => (rng.next() * 2 - 1) * 0.3),
      ]),
    );
    const { feeds } = batchOf(7, 4);
    const run = async (names?: string[]) =>
      session.run(
        {
          ...feeds,
          ...Object.fromEntries(spec.params.map((p) => [p.name, f32(values[p.name]!, p.shape)])),
        },
        names,
      );
    const lossAt = async () => Number((await run(['loss'])).loss!.data[0]);
    const analytic = await run();
    const eps = 1e-2;
    let worst = 0;
    for (const name of wrt) {
      const got = analytic[`grad.${name}`]!.data as Float32Array;
      const x = values[name]!;
      const numeric = new Float64Array(x.length);
      for (let i = 0; i < x.length; i++) {
        const orig = x[i]!;
        x[i] = orig + eps;
        const up = await lossAt();
        x[i] = orig - eps;
        const down = await lossAt();
        x[i] = orig;
        numeric[i] = (up - down) / (2 * eps);
      }
      const scale = Math.max(...numeric.map(Math.abs));
      expect(scale, `${name}: the gradient is not trivially zero`).toBeGreaterThan(1e-3);
      let err = 0;
      for (let i = 0; i < x.length; i++) err = Math.max(err, Math.abs(got[i]! - numeric[i]!) / scale);
      console.log(
        `QLoRA gradcheck ${name}: max|grad| ${scale.toExponential(2)}, max err / max|grad| ${err.toExponential(2)}`,
      );
      worst = Math.max(worst, err);
    }
    await session.dispose();
    expect(worst).toBeLessThan(1e-2);
  });

  it.each(Object.entries(VARIANTS))(
    '%s: the directional derivative along every LoRA weight at once matches central differences',
    async (_, cfg) => {
      const {
        spec,
        wrt: names,
        session,
      } = await lossModel(cfg, 5, 'all', {
        rank: 2,
        alpha: 4,
        kernel: EXACT_4BIT,
      });
      const rng = new Rng(6);
      const values = randomLora(spec, rng, 0.3);
      const direction = randomLora(spec, rng, 1);
      const { feeds } = batchOf(6, 7);
      const at = async (h: number, names?: string[]) =>
        session.run({ ...feeds, ...loraAlong(spec, values, direction, h) }, names);
      const out = await at(0);
      let analytic = 0;
      for (const n of names) {
        const gr = out[`grad.${n}`]!.data as Float32Array;
        for (let i = 0; i < gr.length; i++) analytic += gr[i]! * direction[n]![i]!;
      }
      const h = 1e-3;
      const lossAt = async (x: number) => Number((await at(x, ['loss'])).loss!.data[0]);
      const numeric = ((await lossAt(h)) - (await lossAt(-h))) / (2 * h);
      await session.dispose();
      const err = Math.abs(analytic - numeric) / Math.abs(numeric);
      console.log(
        `QLoRA directional derivative: analytic ${analytic.toFixed(5)}, numeric ${numeric.toFixed(5)}, rel err ${err.toExponential(2)}`,
      );
      expect(Math.abs(numeric)).toBeGreaterThan(0.1);
      expect(err).toBeLessThan(1e-2);
    },
  );

  it.each(Object.entries(VARIANTS))(
    "%s: step 0 (B = 0) reports the plain backbone's loss",
    async (_, cfg) => {
      const weights = randomWeights(cfg, 8);
      const { feeds, B, T, ids, labels, mask, positions } = batchOf(9, 9);
      const { graph, layout, init } = await buildQloraTrainStep(cfg, memorySource(weights));
      const runner = await TrainRunner.create({ layout, step: toModelBytes(graph) }, init);
      const { loss } = await runner.step(feeds, 1e-3);
      await runner.dispose();

      // the backbone alone (default 4-bit kernel, as the QLoRA step), logits of every position
      const plainLoss = async (fused: boolean) => {
        const { graph: plain } = await buildBackboneGraph(cfg, memorySource(weights), {
          logits: 'all',
          fused,
        });
        const session = await createSession(toModelBytes(plain));
        const out = await session.run({
          [IO.inputIds]: i64(ids, [B, T]),
          [IO.attentionMask]: i64(mask, [B, T]),
          [IO.positionIds]: i64(positions, [B, T]),
          ...emptyPast(cfg, B),
        });
        await session.dispose();
        return crossEntropy64(out[IO.logits]!.data as Float32Array, labels, cfg.vocabSize);
      };
      const primitive = await plainLoss(false);
      const fused = await plainLoss(true);
      console.log(`step 0 loss ${loss}, backbone ${primitive} (primitive ops), ${fused} (fused kernels)`);
      // B = 0 adds exactly 0: what differs is float32 summation order (measured <= 5e-8)
      expect(Math.abs(loss - primitive) / primitive).toBeLessThan(1e-6);
      expect(Math.abs(loss - fused) / fused).toBeLessThan(1e-6);
    },
  );

  it.each(Object.entries(VARIANTS))(
    "%s: gradient checkpointing (every block recomputed) gives the plain step's loss and gradients, and its directional derivative matches central differences",
    async (_, cfg) => {
      const opts = { rank: 2, alpha: 4, kernel: EXACT_4BIT };
      const plain = await lossModel(cfg, 11, 'all', opts);
      const ckpt = await lossModel(cfg, 11, 'all', { ...opts, gradientCheckpointing: true });
      const { spec, wrt: names } = ckpt;
      const rng = new Rng(12);
      const values = randomLora(spec, rng, 0.3);
      const direction = randomLora(spec, rng, 1);
      const { feeds } = batchOf(6, 13);
      const at = (session: typeof ckpt.session, h: number, only?: string[]) =>
        session.run({ ...feeds, ...loraAlong(spec, values, direction, h) }, only);
      const [a, b] = [await at(plain.session, 0), await at(ckpt.session, 0)];
      const lossA = Number(a.loss!.data[0]);
      const lossB = Number(b.loss!.data[0]);
      let scale = 0;
      let diff = 0;
      let analytic = 0;
      for (const n of names) {
        const ga = a[`grad.${n}`]!.data as Float32Array;
        const gb = b[`grad.${n}`]!.data as Float32Array;
        for (let i = 0; i < ga.length; i++) {
          scale = Math.max(scale, Math.abs(ga[i]!));
          diff = Math.max(diff, Math.abs(ga[i]! - gb[i]!));
          analytic += gb[i]! * direction[n]![i]!;
        }
      }
      const h = 1e-3;
      const lossAt = async (x: number) => Number((await at(ckpt.session, x, ['loss'])).loss!.data[0]);
      const numeric = ((await lossAt(h)) - (await lossAt(-h))) / (2 * h);
      await plain.session.dispose();
      await ckpt.session.dispose();
      const err = Math.abs(analytic - numeric) / Math.abs(numeric);
      console.log(
        `QLoRA checkpointed: loss ${lossB} vs ${lossA}; max|grad diff| / max|grad| ${(diff / scale).toExponential(2)}; ` +
          `directional derivative ${analytic.toFixed(5)} vs numeric ${numeric.toFixed(5)} (rel err ${err.toExponential(2)})`,
      );
      expect(Math.abs(lossB - lossA) / lossA).toBeLessThan(1e-6);
      expect(scale).toBeGreaterThan(1e-3);
      expect(diff / scale).toBeLessThan(1e-4); // the same math, in another order
      expect(Math.abs(numeric)).toBeGreaterThan(0.1);
      expect(err).toBeLessThan(1e-2);
    },
  );

  it('gradient checkpointing puts every block under recompute: one re-run per block in the backward', async () => {
    const cfg = LLAMA;
    const build = (gradientCheckpointing: boolean) =>
      buildQloraTrainStep(cfg, memorySource(randomWeights(cfg, 14)), { rank: 4, gradientCheckpointing });
    const [plain, ckpt] = [await build(false), await build(true)];
    const count = (graph: typeof plain.graph, name: string) =>
      graph.nodes.filter((n) => new RegExp(`/${name}(_\\d+)?$`).test(n.name)).length;
    expect(count(plain.graph, 'Recompute')).toBe(0);
    expect(count(ckpt.graph, 'Recompute')).toBe(cfg.layers);
    expect(count(ckpt.graph, 'AfterGrad')).toBe(cfg.layers); // each block re-run from its input, once
    // the same parameters, and the same step-0 loss through TrainRunner
    expect(ckpt.layout.params).toEqual(plain.layout.params);
    const { feeds } = batchOf(9, 15);
    const losses: number[] = [];
    for (const { graph, layout, init } of [plain, ckpt]) {
      const runner = await TrainRunner.create({ layout, step: toModelBytes(graph) }, init);
      losses.push((await runner.step(feeds, 1e-3)).loss);
      losses.push((await runner.step(feeds, 1e-3)).loss); // after one update: B != 0
      await runner.dispose();
    }
    console.log(
      `QLoRA losses (plain, plain after 1 update, checkpointed, checkpointed after 1): ${losses.join(' ')}`,
    );
    expect(Math.abs(losses[2]! - losses[0]!) / losses[0]!).toBeLessThan(1e-6);
    expect(Math.abs(losses[3]! - losses[1]!) / losses[1]!).toBeLessThan(1e-5);
  });

  it('a few TrainRunner steps fit a tiny repeated sequence', async () => {
    const cfg = LLAMA;
    const { graph, layout, init } = await buildQloraTrainStep(cfg, memorySource(randomWeights(cfg, 10)), {
      rank: 4,
      alpha: 8,
    });
    const runner = await TrainRunner.create({ layout, step: toModelBytes(graph) }, init);
    const B = 2;
    const T = 12;
    const ids = Array.from({ length: B * T }, (_, i) => 1 + (i % 4)); // 1 2 3 4 1 2 3 4 ...
    const labels = ids.map((_, i) => (i % T === T - 1 ? -100 : ids[i + 1]!));
    const feeds = {
      [QLORA_IO.inputIds]: i64(ids, [B, T]),
      [QLORA_IO.labels]: i64(labels, [B, T]),
      [QLORA_IO.attentionMask]: i64(new Array(B * T).fill(1), [B, T]),
      [QLORA_IO.positionIds]: i64(
        ids.map((_, i) => i % T),
        [B, T],
      ),
    };
    const losses: number[] = [];
    for (let s = 0; s < 20; s++) losses.push((await runner.step(feeds, 1e-2)).loss);
    const params = runner.params();
    await runner.dispose();
    console.log(`QLoRA losses: ${losses.map((l) => l.toFixed(3)).join(' ')}`);
    expect(losses.at(-1)!).toBeLessThan(0.5 * losses[0]!);
    for (let s = 1; s < losses.length; s++) expect(losses[s]!).toBeLessThan(losses[s - 1]! + 1e-3);
    // every adapter moved: B away from 0, A away from its init
    for (const p of layout.params) {
      const moved = params[p.name]!.some((v, i) => Math.abs(v - init[p.name]![i]!) > 1e-4);
      expect(moved, p.name).toBe(true);
    }
  });
});

/** Every LoRA weight of the spec drawn from U(-scale, scale). */
function randomLora(spec: Pick<QloraSpec, 'params'>, rng: Rng, scale: number) {
  return Object.fromEntries(
    spec.params.map((p) => [
      p.name,
      Float32Array.from({ length: p.shape[0]! * p.shape[1]! }, () => (rng.next() * 2 - 1) * scale),
    ]),
  );
}

/** Feeds with every LoRA weight at values + h * direction. */
function loraAlong(
  spec: Pick<QloraSpec, 'params'>,
  values: Record<string, Float32Array>,
  direction: Record<string, Float32Array>,
  h: number,
): Record<string, Tensor> {
  return Object.fromEntries(
    spec.params.map((p) => [
      p.name,
      f32(
        values[p.name]!.map((v, i) => v + h * direction[p.name]![i]!),
        p.shape,
      ),
    ]),
  );
}

/** Mean -log softmax(logits)[label] over labels != -100, in float64. */
function crossEntropy64(logits: Float32Array, labels: number[], vocab: number): number {
  let sum = 0;
  let kept = 0;
  labels.forEach((label, i) => {
    if (label === -100) return;
    const row = logits.subarray(i * vocab, (i + 1) * vocab);
    const max = Math.max(...row);
    const logZ = max + Math.log(row.reduce((acc, v) => acc + Math.exp(v - max), 0));
    sum += logZ - row[label]!;
    kept++;
  });
  return sum / kept;
}
