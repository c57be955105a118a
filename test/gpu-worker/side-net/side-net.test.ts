import { describe, expect, it } from 'vitest';
import { buildBackboneGraph, IO } from '../../../gpu-worker/src/backbone/graph/emit.ts';
import { HF_NAMES } from '../../../gpu-worker/src/backbone/types.ts';
import {
  buildTrainStep,
  type Graph,
  inPlaceProblems,
  toModelBytes,
  type Value,
} from '../../../gpu-worker/src/graph/index.ts';
import { createSession, f32, i64, type Tensor } from '../../../gpu-worker/src/runtime/index.ts';
import {
  buildSideInferenceGraph,
  initSideNet,
  lmHeadCrossEntropy,
  lstPreset,
  resolveSideNet,
  SIDE_IO,
  sideForward,
  sideNetParams,
  sideTrainSpec,
  xladderPreset,
} from '../../../gpu-worker/src/side-net/index.ts';
import { gradcheck, rng } from '../../helpers/gradcheck.ts';
import { emptyPast, memorySource, randomWeights, VARIANTS } from '../../helpers/tiny-backbone.ts';

const cfg = { ...VARIANTS['llama (GQA, llama3 rope scaling)']!, layers: 3 };

async function backboneRun(ids: number[][], mask: number[][]) {
  const weights = randomWeights(cfg, 21);
  const { graph } = await buildBackboneGraph(cfg, memorySource(weights), {
    linear: { kind: 'fp32' },
    logits: 'all',
  });
  const session = await createSession(toModelBytes(graph));
  const B = ids.length;
  const T = ids[0]!.length;
  const positions = mask.map((row) => {
    let p = -1;
    return row.map((m) => (m ? ++p : 0));
  });
  const out = await session.run({
    [IO.inputIds]: i64(ids.flat(), [B, T]),
    [IO.attentionMask]: i64(mask.flat(), [B, T]),
    [IO.positionIds]: i64(positions.flat(), [B, T]),
    ...emptyPast(cfg, B),
  });
  await session.dispose();
  return { out, positions, head: weights.get(HF_NAMES.lmHead)! };
}

function sideFeeds(
  shape: ReturnType<typeof resolveSideNet>,
  params: Record<string, Float32Array>,
  backbone: Record<string, Tensor>,
  head: Float32Array,
  mask: number[][],
  positions: number[][],
) {
  const B = mask.length;
  const T = mask[0]!.length;
  const feeds: Record<string, Tensor> = {
    [SIDE_IO.finalHidden]: backbone[IO.finalHidden]!,
    [SIDE_IO.lmHead]: f32(head, [shape.vocab, shape.d]),
    [SIDE_IO.mask]: i64(mask.flat(), [B, T]),
    [SIDE_IO.positions]: i64(positions.flat(), [B, T]),
  };
  for (const t of shape.taps) feeds[SIDE_IO.tap(t)] = backbone[IO.tap(t)]!;
  for (const p of sideNetParams(shape)) feeds[SIDE_IO.param(p.name)] = f32(params[p.name]!, p.shape);
  shape.layers.forEach((_, j) => {
    feeds[SIDE_IO.pastKey(j)] = f32(new Float32Array(0), [B, shape.heads, 0, shape.headDim]);
    feeds[SIDE_IO.pastValue(j)] = f32(new Float32Array(0), [B, shape.heads, 0, shape.headDim]);
  });
  return feeds;
}

describe('side networks', () => {
  it.each([
    ['lst', lstPreset(cfg, { reduction_factor: 4 })],
    ['xladder', xladderPreset(cfg, 2, { reduction_factor: 4 })],
  ] as const)('%s at step 0 reproduces the backbone logits (<= 1e-5)', async (_, config) => {
    const shape = resolveSideNet(cfg, config);
    const ids = [
      [0, 0, 5, 9, 33, 2],
      [7, 1, 60, 4, 19, 8],
    ];
    const mask = [
      [0, 0, 1, 1, 1, 1],
      [1, 1, 1, 1, 1, 1],
    ];
    const { out, positions, head } = await backboneRun(ids, mask);
    const side = await createSession(toModelBytes(buildSideInferenceGraph(shape)));
    const got = (await side.run(sideFeeds(shape, initSideNet(shape, 1), out, head, mask, positions)))[
      SIDE_IO.logits
    ]!;
    const full = out[IO.logits]!.data as Float32Array; // (B, T, V)
    const V = cfg.vocabSize;
    for (let b = 0; b < 2; b++) {
      const want = full.subarray((b * 6 + 5) * V, (b * 6 + 6) * V);
      const row = (got.data as Float32Array).subarray(b * V, (b + 1) * V);
      const scale = Math.max(...Array.from(want, Math.abs));
      expect(Math.max(...Array.from(row, (v, i) => Math.abs(v - want[i]!))) / scale).toBeLessThanOrEqual(
        1e-5,
      );
    }
    await side.dispose();
  });

  it.each([
    ['kept activations', false, 0],
    ['recomputed blocks, with dropout', true, 0.3],
  ] as const)(
    'the whole side-net loss has the gradients of finite differences (ladder and free layers, float64, %s)',
    async (_, recompute, dropout) => {
      const tiny = { ...cfg, hiddenSize: 8, vocabSize: 11, layers: 2, intermediateSize: 16 };
      const shape = resolveSideNet(tiny, {
        taps: [1, 2],
        free: 1,
        reduction_factor: 2,
        side_heads: 2,
        dropout,
      });
      const specs = sideNetParams(shape);
      const r = rng(3);
      const B = 2;
      const T = 3;
      const consts = (g: Graph, shapeOf: number[], scale = 1) =>
        g.constant(
          'float64',
          shapeOf,
          Float64Array.from({ length: shapeOf.reduce((a, b) => a * b, 1) }, () => (r() * 2 - 1) * scale),
        );
      await gradcheck(
        (...xs: Value[]) => {
          const g = xs[0]!.graph;
          const params = Object.fromEntries(specs.map((p, i) => [p.name, xs[i]!]));
          const taps = new Map(shape.taps.map((t) => [t, consts(g, [B, T, tiny.hiddenSize])]));
          const i64c = (vals: number[], dims: number[]) =>
            g.constant(
              'int64',
              dims,
              BigInt64Array.from(vals, (v) => BigInt(v)),
            );
          const { out } = sideForward(g, shape, params, {
            taps,
            finalHidden: consts(g, [B, T, tiny.hiddenSize]),
            mask: i64c([0, 1, 1, 1, 1, 1], [B, T]),
            positions: i64c([0, 0, 1, 0, 1, 2], [B, T]),
            dropoutSeed: dropout ? g.constant('int64', [], BigInt64Array.of(17n)) : undefined,
            recompute,
          });
          const labels = i64c([-100, 3, 7, 1, -100, 10], [B, T]);
          return lmHeadCrossEntropy(out, consts(g, [tiny.vocabSize, tiny.hiddenSize]), labels, { chunk: 4 });
        },
        // Non-zero Up and gates so every path carries gradient.
        specs.map((p) => ({ name: p.name.replaceAll('.', '_'), shape: p.shape })),
        { tol: 2e-6 },
      );
    },
  );
});

describe('the side-net training step', () => {
  it.each([
    ['lst', lstPreset(cfg, { reduction_factor: 4 })],
    ['xladder', xladderPreset(cfg, 2, { reduction_factor: 4 })],
  ] as const)(
    '%s: every read of the state comes before its update, so runners update in place',
    (_, config) => {
      const { graph, layout } = buildTrainStep(sideTrainSpec(resolveSideNet(cfg, config)));
      expect(inPlaceProblems(graph, layout.next)).toEqual([]);
      expect(layout.inPlace).toBe(true);
    },
  );
});

describe('generation with an adapter', () => {
  /** scoreBlock: past it a call attends in blocks (default: only prompts far longer than these). */
  async function stepperFor(
    weights: Record<string, Float32Array>,
    shape: ReturnType<typeof resolveSideNet>,
    scoreBlock?: { backbone: number; side: number },
  ) {
    const { BackboneStepper } = await import('../../../gpu-worker/src/backbone/generate/index.ts');
    const { AdapterStepper, adapterTensors } = await import('../../../gpu-worker/src/side-net/index.ts');
    const bbWeights = randomWeights(cfg, 21);
    const { graph } = await buildBackboneGraph(cfg, memorySource(bbWeights), {
      linear: { kind: 'fp32' },
      logits: 'last',
      ...(scoreBlock ? { scoreBlock: scoreBlock.backbone } : {}),
    });
    const backbone = new BackboneStepper(await createSession(toModelBytes(graph)), cfg);
    const side = await createSession(
      toModelBytes(buildSideInferenceGraph(shape, { scoreBlock: scoreBlock?.side })),
    );
    const head = f32(bbWeights.get(HF_NAMES.lmHead)!, [cfg.vocabSize, cfg.hiddenSize]);
    return {
      backbone,
      adapter: new AdapterStepper(backbone, side, shape, adapterTensors(shape, weights), head),
    };
  }

  it('with a fresh adapter generates what the backbone generates; with a trained one, decoding equals recompute', async () => {
    const { generate } = await import('../../../gpu-worker/src/backbone/generate/index.ts');
    const shape = resolveSideNet(cfg, xladderPreset(cfg, 2, { reduction_factor: 4 }));
    const fresh = await stepperFor(initSideNet(shape, 2), shape);
    const prompts = [
      { prompt: [4, 9, 13], params: { maxTokens: 6 } },
      { prompt: [50, 2, 7, 7, 30], params: { maxTokens: 6 } },
    ];
    const alone = await generate(fresh.backbone, prompts);
    const withAdapter = await generate(fresh.adapter, prompts);
    expect(withAdapter.map((r) => r.tokens)).toEqual(alone.map((r) => r.tokens));

    // A non-trivial adapter (Up != 0): every decode step's logits equal a full recompute.
    const weights = initSideNet(shape, 3);
    const r = rng(8);
    weights['up.weight'] = weights['up.weight']!.map(() => (r() * 2 - 1) * 0.5);
    await expectDecodeEqualsRecompute(await stepperFor(weights, shape));
  });

  it('a prompt past scoreBlock attends in blocks (backbone and side net), and decoding after it equals the recompute', async () => {
    // Recomputes of 3+ tokens (backbone: 4 heads x 3 x 3 > 32 scores) and of 5+ (side net: 1 head
    // x 5 x 5 > 16) take the blocks; decoding steps (4 x 1 x <= 6; 1 x 1 x <= 6) one softmax.
    const shape = resolveSideNet(cfg, xladderPreset(cfg, 2, { reduction_factor: 4 }));
    expect(shape.heads).toBe(1);
    const weights = initSideNet(shape, 3);
    const r = rng(8);
    weights['up.weight'] = weights['up.weight']!.map(() => (r() * 2 - 1) * 0.5);
    await expectDecodeEqualsRecompute(await stepperFor(weights, shape, { backbone: 32, side: 16 }));
  });

  async function expectDecodeEqualsRecompute(trained: Awaited<ReturnType<typeof stepperFor>>) {
    const seq = [4, 9, 13, 22, 40, 1];
    let out = await trained.adapter.step({
      ids: [seq.slice(0, 3)],
      mask: [[1, 1, 1]],
      positions: [[0, 1, 2]],
    });
    for (let t = 3; t < seq.length; t++) {
      out = await trained.adapter.step({
        ids: [[seq[t]!]],
        mask: [new Array(t + 1).fill(1)],
        positions: [[t]],
        past: out.present,
      });
      const full = await trained.adapter.step({
        ids: [seq.slice(0, t + 1)],
        mask: [new Array(t + 1).fill(1)],
        positions: [seq.slice(0, t + 1).map((_, i) => i)],
      });
      const want = full.lastLogits[0]!;
      const scale = Math.max(...Array.from(want, Math.abs));
      expect(
        Math.max(...Array.from(out.lastLogits[0]!, (v, i) => Math.abs(v - want[i]!))) / scale,
      ).toBeLessThan(1e-5);
    }
  }
});
