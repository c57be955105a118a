import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTrainStep, toModelBytes } from '../../../gpu-worker/src/graph/index.ts';
import { f16, f32, i64, type Tensor, TrainRunner } from '../../../gpu-worker/src/runtime/index.ts';
import {
  initSideNet,
  lstPreset,
  resolveSideNet,
  SIDE_IO,
  sideTrainSpec,
} from '../../../gpu-worker/src/side-net/index.ts';
import { encodeHalf } from '../../../gpu-worker/src/util/half.ts';
import { rng } from '../../helpers/gradcheck.ts';
import { VARIANTS } from '../../helpers/tiny-backbone.ts';

// The order onnxruntime runs a side-net training step in decides its peak memory: what the
// backward of a layer reads should be freed when that layer is done, not at the end of the step.
// These read the order off onnxruntime's own profile of one step, run as the trainer runs it.

const LAYERS = 6;
const cfg = { ...VARIANTS['llama (GQA, llama3 rope scaling)']!, layers: LAYERS };
const dir = mkdtempSync(join(tmpdir(), 'ladder-schedule-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Kernel names in the order the one profiled run executed them. */
let order: string[] = [];

beforeAll(async () => {
  const shape = resolveSideNet(cfg, lstPreset(cfg));
  const { graph, layout } = buildTrainStep(sideTrainSpec(shape));
  const runner = await TrainRunner.create({ layout, step: toModelBytes(graph) }, initSideNet(shape, 3), {
    session: { profile: join(dir, 'step') },
  });
  const [B, T] = [2, 12];
  const r = rng(5);
  const seq = (f: (i: number) => number) => Array.from({ length: B * T }, (_, i) => f(i));
  const feeds: Record<string, Tensor> = {
    [SIDE_IO.finalHidden]: f32(
      seq(() => 0).flatMap(() => Array.from({ length: cfg.hiddenSize }, () => r() - 0.5)),
      [B, T, cfg.hiddenSize],
    ),
    [SIDE_IO.lmHead]: f32(
      Array.from({ length: cfg.vocabSize * cfg.hiddenSize }, () => r() - 0.5),
      [cfg.vocabSize, cfg.hiddenSize],
    ),
    [SIDE_IO.labels]: i64(
      seq((i) => (i % T < 3 ? -100 : i % cfg.vocabSize)),
      [B, T],
    ),
    [SIDE_IO.mask]: i64(
      seq(() => 1),
      [B, T],
    ),
    [SIDE_IO.positions]: i64(
      seq((i) => i % T),
      [B, T],
    ),
  };
  for (const t of shape.taps) {
    const bits = new Uint16Array(B * T * cfg.hiddenSize); // float16 taps, as the backbone pass gives
    encodeHalf(
      Float32Array.from(bits, () => r() - 0.5),
      bits,
    );
    feeds[SIDE_IO.tap(t)] = f16(bits, [B, T, cfg.hiddenSize]);
  }
  await runner.step(feeds, 1e-3);
  await runner.dispose(); // writes the profile
  const file = readdirSync(dir).find((f) => f.startsWith('step') && f.endsWith('.json'));
  if (!file) throw new Error(`no profile written in ${dir}`);
  const events = JSON.parse(readFileSync(join(dir, file), 'utf8')) as {
    cat: string;
    name: string;
    ts: number;
  }[];
  order = events
    .filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time'))
    .sort((a, b) => a.ts - b.ts)
    .map((e) => e.name.slice(0, -'_kernel_time'.length));
});

/** Positions in `order` of the backward's kernels for side layer `layer` (recomputation included). */
function backwardOf(layer: number): number[] {
  const mark = `/loss/side/layers.${layer}/`;
  return order.flatMap((name, i) => (/^(\/grad)+\/loss\//.test(name) && name.includes(mark) ? [i] : []));
}

describe("onnxruntime's execution order of a side-net training step", () => {
  it('profiles every layer of the step', () => {
    for (let l = 0; l < LAYERS; l++) expect(backwardOf(l).length).toBeGreaterThan(10);
    expect(order.some((n) => n.startsWith('/optim/'))).toBe(true);
  });

  it('runs the backward a layer at a time, weight gradients included, from the top layer down', () => {
    // Summing the squared gradients for the clip norm in parameter order once made onnxruntime
    // walk the input-gradient chain down to layer 0 first and leave every weight gradient (and
    // the activations it reads) for the end.
    for (let l = LAYERS - 1; l >= 2; l--) {
      const lastOfLayer = Math.max(...backwardOf(l));
      const firstTwoBelow = Math.min(...backwardOf(l - 2));
      expect(lastOfLayer, `layer ${l} still running after layer ${l - 2} started`).toBeLessThan(
        firstTwoBelow,
      );
    }
  });

  it("recomputes a layer's block only once its backward has begun", () => {
    // The recomputed block reads only its input and weights, so the order may run it any time
    // after the forward (and onnxruntime would merge it with the forward if it could): it is tied
    // to the block's incoming gradient. The SwiGLU's backward recomputes its sigmoid once more.
    const lossScan = Math.max(...order.flatMap((n, i) => (n.startsWith('/loss/lm_loss/Chunks') ? [i] : [])));
    for (let l = 0; l < LAYERS - 1; l++) {
      const recomputed = order.flatMap((n, i) =>
        n.startsWith(`/grad/loss/side/layers.${l}/block/Recompute/`) ? [i] : [],
      );
      const sigmoids = order.flatMap((n, i) =>
        n.startsWith(`/grad/grad/loss/side/layers.${l}/block/Recompute/mlp/swiglu/`) && /Sigmoid/.test(n)
          ? [i]
          : [],
      );
      expect(recomputed.length, `layer ${l}: block not recomputed`).toBeGreaterThan(20);
      expect(sigmoids.length, `layer ${l}: no sigmoid recomputed`).toBeGreaterThan(0);
      const upperBackward = Math.min(...backwardOf(l + 1));
      for (const at of [...recomputed, ...sigmoids]) {
        expect(at).toBeGreaterThan(lossScan);
        expect(at, `layer ${l}'s block ran before layer ${l + 1}'s backward`).toBeGreaterThan(upperBackward);
      }
    }
  });

  it('runs the forward once: no recomputed value outlives its layer', () => {
    // The forward's own block kernels are not under /grad; the recomputed block's last product,
    // which nothing reads, is not in the model at all (it would hold its input to the end).
    for (let l = 1; l < LAYERS; l++) {
      const below = Math.min(...backwardOf(l - 1));
      const late = backwardOf(l).filter((i) => i > below && order[i]!.includes('/block/Recompute/'));
      expect(
        late.map((i) => order[i]),
        `layer ${l}`,
      ).toEqual([]);
    }
  });
});
