import { describe, expect, it } from 'vitest';
import { buildBackboneGraph, IO } from '../../../gpu-worker/src/backbone/graph/emit.ts';
import { toModelBytes } from '../../../gpu-worker/src/graph/index.ts';
import { createSession, i64 } from '../../../gpu-worker/src/runtime/index.ts';
import { referenceForward } from '../../helpers/reference-llm.ts';
import { emptyPast, memorySource, randomWeights, VARIANTS } from '../../helpers/tiny-backbone.ts';

function maxRelError(got: Float32Array, want: Float64Array[]): number {
  const flat = want.flatMap((r) => Array.from(r));
  const scale = Math.max(...flat.map(Math.abs));
  let err = 0;
  for (let i = 0; i < flat.length; i++) err = Math.max(err, Math.abs(got[i]! - flat[i]!) / scale);
  return err;
}

describe('the fp32 ONNX backbone matches an independent float64 reference', () => {
  it.each(Object.entries(VARIANTS))(
    '%s: every tap, the final state and the logits within 1e-4',
    async (_, cfg) => {
      const weights = randomWeights(cfg, 11);
      const { graph } = await buildBackboneGraph(cfg, memorySource(weights), {
        linear: { kind: 'fp32' },
        logits: 'all',
      });
      const session = await createSession(toModelBytes(graph));
      const ids = [3, 17, 42, 5, 60, 0, 9, 33, 21];
      const T = ids.length;
      const out = await session.run({
        [IO.inputIds]: i64(ids, [1, T]),
        [IO.attentionMask]: i64(new Array(T).fill(1), [1, T]),
        [IO.positionIds]: i64(
          ids.map((_, t) => t),
          [1, T],
        ),
        ...emptyPast(cfg, 1),
      });
      const ref = referenceForward(cfg, weights, ids);
      for (let l = 0; l <= cfg.layers; l++) {
        expect(
          maxRelError(out[IO.tap(l)]!.data as Float32Array, ref.taps[l]!),
          `tap ${l}`,
        ).toBeLessThanOrEqual(1e-4);
      }
      expect(maxRelError(out[IO.finalHidden]!.data as Float32Array, ref.finalHidden)).toBeLessThanOrEqual(
        1e-4,
      );
      expect(maxRelError(out[IO.logits]!.data as Float32Array, ref.logits)).toBeLessThanOrEqual(1e-4);
      expect(out[IO.presentKey(1)]!.dims).toEqual([1, cfg.kvHeads, T, cfg.headDim]);
      await session.dispose();
    },
  );
});
