import { describe, expect, it } from 'vitest';
import { BackboneStepper, type KvCache } from '../../../gpu-worker/src/backbone/generate/index.ts';
import { buildBackboneGraph, IO } from '../../../gpu-worker/src/backbone/graph/emit.ts';
import { HF_NAMES } from '../../../gpu-worker/src/backbone/types.ts';
import { toModelBytes } from '../../../gpu-worker/src/graph/index.ts';
import { createSession, f32, i64, type Tensor, zeros } from '../../../gpu-worker/src/runtime/index.ts';
import { selectRows } from '../../../gpu-worker/src/serving/kv.ts';
import {
  adapterTensors,
  buildSideInferenceGraph,
  initSideNet,
  lstPreset,
  resolveSideNet,
  SIDE_IO,
  type SideNetShape,
  sideNetParams,
  xladderPreset,
} from '../../../gpu-worker/src/side-net/index.ts';
import { buildStackedSideInferenceGraph, rowShape } from '../../../gpu-worker/src/side-net/stacked.ts';
import { rng } from '../../helpers/gradcheck.ts';
import { memorySource, randomWeights, VARIANTS } from '../../helpers/tiny-backbone.ts';

const cfg = { ...VARIANTS['llama (GQA, llama3 rope scaling)']!, layers: 3 };

/** An adapter whose every weight matters: random Up, gates, norms and biases. */
function trainedLike(shape: SideNetShape, seed: number): Record<string, Float32Array> {
  const w = initSideNet(shape, seed);
  const r = rng(seed + 50);
  for (const p of sideNetParams(shape)) {
    if (p.init.kind !== 'normal') w[p.name] = w[p.name]!.map((v) => v + (r() * 2 - 1) * 0.5);
  }
  w['up.weight'] = w['up.weight']!.map(() => (r() * 2 - 1) * 0.5);
  return w;
}

/** Each row's adapter weights stacked on the batch axis, as the stacked graph takes them. */
function stackRows(shape: SideNetShape, rows: Record<string, Float32Array>[]): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const p of sideNetParams(shape)) {
    const data = new Float32Array(rows.length * rows[0]![p.name]!.length);
    rows.forEach((w, b) => {
      data.set(w[p.name]!, b * w[p.name]!.length);
    });
    out[SIDE_IO.param(p.name)] = f32(data, [rows.length, ...rowShape(p.shape)]);
  }
  return out;
}

function relErr(got: Float32Array, want: Float32Array): number {
  const scale = Math.max(...Array.from(want, Math.abs));
  return Math.max(...Array.from(got, (v, i) => Math.abs(v - want[i]!))) / scale;
}

describe('stacked side pass', () => {
  it.each([
    ['lst, scalar gates', lstPreset(cfg, { reduction_factor: 4, gate: 'scalar' })],
    ['xladder, vector gates', xladderPreset(cfg, 2, { reduction_factor: 4, gate: 'vector' })],
  ] as const)(
    '%s: one pass over rows of 3 adapters equals a pass per adapter, prefill and decode (<= 1e-5)',
    async (_, config) => {
      const shape = resolveSideNet(cfg, config);
      const bbWeights = randomWeights(cfg, 21);
      const { graph } = await buildBackboneGraph(cfg, memorySource(bbWeights), {
        linear: { kind: 'fp32' },
        logits: 'last',
      });
      const backbone = new BackboneStepper(await createSession(toModelBytes(graph)), cfg);
      const plain = await createSession(toModelBytes(buildSideInferenceGraph(shape)));
      const stacked = await createSession(toModelBytes(buildStackedSideInferenceGraph(shape)));
      const head = f32(bbWeights.get(HF_NAMES.lmHead)!, [cfg.vocabSize, cfg.hiddenSize]);
      const adapters = [0, 1, 2].map((i) => trainedLike(shape, i + 1));

      // Rows 0 and 3 share adapter 0; prompts of different lengths, left-padded.
      const rowAdapter = [0, 1, 2, 0];
      const stackedWeights = stackRows(
        shape,
        rowAdapter.map((a) => adapters[a]!),
      );
      const prompts = [
        [4, 9, 13, 22, 40],
        [50, 2],
        [7, 7, 30, 1],
        [60, 3, 3, 8, 12],
      ];
      const T = 5;
      let lens = prompts.map((p) => p.length);
      const ids = prompts.map((p) => [...new Array<number>(T - p.length).fill(0), ...p]);
      let mask = lens.map((n) => [...new Array<number>(T - n).fill(0), ...new Array<number>(n).fill(1)]);
      let positions = lens.map((n) => [
        ...new Array<number>(T - n).fill(0),
        ...Array.from({ length: n }, (_, t) => t),
      ]);

      const sideFeeds = (
        outputs: Record<string, Tensor>,
        rows: number[],
        past: KvCache | undefined,
        m: number[][],
        pos: number[][],
      ) => {
        const feeds: Record<string, Tensor> = {
          [SIDE_IO.finalHidden]: selectRows(outputs[IO.finalHidden]!, rows),
          [SIDE_IO.lmHead]: head,
          [SIDE_IO.mask]: i64(
            rows.flatMap((b) => m[b]!),
            [rows.length, m[0]!.length],
          ),
          [SIDE_IO.positions]: i64(
            rows.flatMap((b) => pos[b]!),
            [rows.length, pos[0]!.length],
          ),
        };
        for (const t of shape.taps) feeds[SIDE_IO.tap(t)] = selectRows(outputs[IO.tap(t)]!, rows);
        shape.layers.forEach((_, j) => {
          const empty = zeros('float32', [rows.length, shape.heads, 0, shape.headDim]);
          feeds[SIDE_IO.pastKey(j)] = past?.keys[j] ?? empty;
          feeds[SIDE_IO.pastValue(j)] = past?.values[j] ?? empty;
        });
        return feeds;
      };
      const present = (out: Record<string, Tensor>): KvCache => ({
        keys: shape.layers.map((_, j) => out[SIDE_IO.presentKey(j)]!),
        values: shape.layers.map((_, j) => out[SIDE_IO.presentValue(j)]!),
      });
      const groups = [0, 1, 2].map((a) => rowAdapter.flatMap((x, b) => (x === a ? [b] : [])));

      let bbPast: KvCache | undefined;
      let stackedPast: KvCache | undefined;
      const groupPast: (KvCache | undefined)[] = [undefined, undefined, undefined];
      let next = ids;
      for (let step = 0; step < 3; step++) {
        const bb = await backbone.run({ ids: next, mask, positions, past: bbPast });
        bbPast = bb.present;
        const every = rowAdapter.map((_, b) => b);
        const one = await stacked.run({
          ...stackedWeights,
          ...sideFeeds(bb.outputs, every, stackedPast, mask, positions),
        });
        stackedPast = present(one);
        const got = one[SIDE_IO.logits]!.data as Float32Array; // (B, 1, V)
        const V = cfg.vocabSize;
        for (const [a, rows] of groups.entries()) {
          const ref = await plain.run({
            ...adapterTensors(shape, adapters[a]!),
            ...sideFeeds(bb.outputs, rows, groupPast[a], mask, positions),
          });
          groupPast[a] = present(ref);
          const want = ref[SIDE_IO.logits]!.data as Float32Array;
          rows.forEach((b, i) => {
            const err = relErr(got.subarray(b * V, (b + 1) * V), want.subarray(i * V, (i + 1) * V));
            expect(err, `step ${step}, row ${b} (adapter ${a})`).toBeLessThanOrEqual(1e-5);
          });
        }
        if (step === 0) {
          // The index really picks the weights: other adapters for the same rows give other logits.
          const swapped = await stacked.run({
            ...stackRows(
              shape,
              [1, 2, 0, 1].map((a) => adapters[a]!),
            ),
            ...sideFeeds(bb.outputs, every, undefined, mask, positions),
          });
          expect(relErr(swapped[SIDE_IO.logits]!.data as Float32Array, got)).toBeGreaterThan(1e-2);
        }
        next = rowAdapter.map((_, b) => {
          const row = got.subarray(b * V, (b + 1) * V);
          return [row.indexOf(Math.max(...row))];
        });
        mask = mask.map((m) => [...m, 1]);
        positions = lens.map((n) => [n]);
        lens = lens.map((n) => n + 1);
      }
      await Promise.all([backbone.session.dispose(), plain.dispose(), stacked.dispose()]);
    },
  );
});
