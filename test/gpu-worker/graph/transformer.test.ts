import { describe, expect, it } from 'vitest';
import {
  buildTrainStep,
  CAUSAL_LM_BATCH,
  type CausalLMConfig,
  causalLMLogits,
  causalLMLoss,
  causalLMParams,
  Graph,
  initCausalLM,
  toModelBytes,
} from '../../../gpu-worker/src/graph/index.ts';
import { createSession, f32, i64, TrainRunner } from '../../../gpu-worker/src/runtime/index.ts';
import { Rng } from '../../../gpu-worker/src/util/rng.ts';

// A 2-layer causal transformer (d = 64) trained by the engine on a copy task:
//   BOS a1..a8 SEP a1..a8   — the loss (and the accuracy) is on the second copy only,
// which a transformer can only solve by attending back to the first copy (induction heads).
const CFG: CausalLMConfig = {
  vocab: 16,
  d: 64,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  ffn: 128,
  ropeTheta: 10_000,
  eps: 1e-6,
};
const N = 8;
const T = 2 * N + 1; // inputs are the sequence without its last token
const BOS = 0;
const SEP = 1;

function batchOf(rng: Rng, size: number) {
  const ids = new Array<number>(size * T);
  const labels = new Array<number>(size * T);
  const positions = new Array<number>(size * T);
  for (let b = 0; b < size; b++) {
    const a = Array.from({ length: N }, () => 2 + rng.int(CFG.vocab - 2));
    const seq = [BOS, ...a, SEP, ...a]; // length 2N + 2
    for (let t = 0; t < T; t++) {
      ids[b * T + t] = seq[t]!;
      labels[b * T + t] = t >= N + 1 ? seq[t + 1]! : -100; // predict the copy only
      positions[b * T + t] = t;
    }
  }
  return { ids, labels, positions, size };
}

describe('a 2-layer causal transformer trained with the engine', () => {
  it('learns to copy a sequence to >= 99% token accuracy', async () => {
    const specs = causalLMParams(CFG);
    const { graph, layout } = buildTrainStep({
      params: specs.map(({ name, shape }) => ({ name, shape })),
      batch: CAUSAL_LM_BATCH.map((b) => ({ ...b, shape: [...b.shape] })),
      loss: (g, params, batch) => causalLMLoss(g, CFG, params, batch),
      optim: { weightDecay: 0.01, maxGradNorm: 1 },
    });
    const runner = await TrainRunner.create({ layout, step: toModelBytes(graph) }, initCausalLM(CFG, 7));

    // Inference graph: the same forward with the weights as inputs.
    const eg = new Graph({ name: 'eval' });
    const params = Object.fromEntries(specs.map((s) => [s.name, eg.input(s.name, 'float32', s.shape)]));
    const ids = eg.input('input_ids', 'int64', ['batch', 'seq']);
    const positions = eg.input('positions', 'int64', ['batch', 'seq']);
    eg.output(causalLMLogits(eg, CFG, params, { input_ids: ids, positions }), 'logits');
    const evalSession = await createSession(toModelBytes(eg));

    const held = batchOf(new Rng(999), 256);
    const accuracy = async () => {
      const w = runner.params();
      const feeds = {
        ...Object.fromEntries(specs.map((s) => [s.name, f32(w[s.name] as Float32Array, s.shape)])),
        input_ids: i64(held.ids, [held.size, T]),
        positions: i64(held.positions, [held.size, T]),
      };
      const logits = (await evalSession.run(feeds)).logits!.data as Float32Array;
      let right = 0;
      let total = 0;
      for (let p = 0; p < held.size * T; p++) {
        if (held.labels[p] === -100) continue;
        let best = 0;
        for (let v = 1; v < CFG.vocab; v++)
          if (logits[p * CFG.vocab + v]! > logits[p * CFG.vocab + best]!) best = v;
        right += best === held.labels[p] ? 1 : 0;
        total++;
      }
      return right / total;
    };

    const rng = new Rng(1);
    const losses: number[] = [];
    let acc = await accuracy();
    expect(acc).toBeLessThan(0.3); // untrained: about chance (1/14)
    for (let step = 1; step <= 2000 && acc < 0.99; step++) {
      const b = batchOf(rng, 32);
      const lr = 3e-3 * Math.min(1, step / 50);
      const { loss } = await runner.step(
        {
          input_ids: i64(b.ids, [32, T]),
          labels: i64(b.labels, [32, T]),
          positions: i64(b.positions, [32, T]),
        },
        lr,
      );
      losses.push(loss);
      if (step % 100 === 0) acc = await accuracy();
    }
    expect(acc).toBeGreaterThanOrEqual(0.99);
    expect(losses.at(-1)!).toBeLessThan(losses[0]! / 10);
    await runner.dispose();
    await evalSession.dispose();
  }, 120_000);
});
