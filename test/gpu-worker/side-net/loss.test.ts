import { describe, expect, it } from 'vitest';
import { crossEntropy, Graph, matmul, toModelBytes } from '../../../gpu-worker/src/graph/index.ts';
import { createSession, f32, i64 } from '../../../gpu-worker/src/runtime/index.ts';
import { lmHeadCrossEntropy } from '../../../gpu-worker/src/side-net/loss.ts';
import { gradcheck, rng } from '../../helpers/gradcheck.ts';

const V = 23;
const D = 6;

function labelsFor(n: number, seed: number): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, (_, i) => (i % 4 === 1 ? -100 : Math.floor(r() * V)));
}

describe('the chunked LM-head cross-entropy', () => {
  it.each([
    [1, 7, 4], // N < chunk... and not a multiple
    [2, 9, 5],
    [3, 4, 16],
  ])('B=%i T=%i chunk=%i equals the full-logits cross-entropy', async (B, T, chunk) => {
    const r = rng(B * 100 + T);
    const hidden = Array.from({ length: B * T * D }, () => r() * 2 - 1);
    const head = Array.from({ length: V * D }, () => r() * 2 - 1);
    const labels = labelsFor(B * T, T);
    const g = new Graph();
    const h = g.input('hidden', 'float32', ['batch', 'seq', D]);
    const w = g.input('head', 'float32', [V, D]);
    const l = g.input('labels', 'int64', ['batch', 'seq']);
    g.output(lmHeadCrossEntropy(h, w, l, { chunk }), 'chunked');
    g.output(crossEntropy(matmul(h, w, { transB: true }), l), 'full');
    // Nothing outside the chunk loop has the (.., V) shape of full logits, except the reference.
    const outer = g.nodes.filter((n) => n.name.startsWith('/lm_loss'));
    expect(outer.length).toBeGreaterThan(10);
    expect(outer.some((n) => n.outputs.some((v) => v.shape.at(-1) === V))).toBe(false);
    const s = await createSession(toModelBytes(g));
    const out = await s.run({
      hidden: f32(hidden, [B, T, D]),
      head: f32(head, [V, D]),
      labels: i64(labels, [B, T]),
    });
    expect(Number(out.chunked!.data[0])).toBeCloseTo(Number(out.full!.data[0]), 5);
    await s.dispose();
  });

  it('its hand-written backward matches finite differences (float64)', async () => {
    const r = rng(5);
    const head = Float64Array.from({ length: V * D }, () => r() * 2 - 1);
    const labels = labelsFor(2 * 5, 3);
    await gradcheck(
      (hidden) => {
        const g = hidden.graph;
        const w = g.constant('float64', [V, D], head);
        const l = g.constant(
          'int64',
          [2, 5],
          BigInt64Array.from(labels, (x) => BigInt(x)),
        );
        return lmHeadCrossEntropy(hidden, w, l, { chunk: 3 });
      },
      [{ name: 'hidden', shape: [2, 5, D] }],
    );
  });

  it('is 0 with no gradient when every label is ignored', async () => {
    const g = new Graph();
    const h = g.input('hidden', 'float32', [1, 3, D]);
    const w = g.input('head', 'float32', [V, D]);
    const l = g.input('labels', 'int64', [1, 3]);
    g.output(lmHeadCrossEntropy(h, w, l, { chunk: 2 }), 'loss');
    const s = await createSession(toModelBytes(g));
    const out = await s.run({
      hidden: f32(new Array(3 * D).fill(0.5), [1, 3, D]),
      head: f32(new Array(V * D).fill(0.1), [V, D]),
      labels: i64([-100, -100, -100], [1, 3]),
    });
    expect(Number(out.loss!.data[0])).toBe(0);
    await s.dispose();
  });
});
