import { describe, expect, it } from 'vitest';
import { chunkedAttention, Graph, MASKED_SCORE, toModelBytes } from '../../../gpu-worker/src/graph/index.ts';
import { createSession, f32 } from '../../../gpu-worker/src/runtime/index.ts';
import { gradcheck, rng } from '../../helpers/gradcheck.ts';

// Attention over blocks of query rows: the forward against a plain softmax(q k^T + bias) v written
// here, the hand-written backward against finite differences.

interface Case {
  B: number;
  Hkv: number;
  G: number;
  T: number;
  S: number;
  dh: number;
}

function randoms(n: number, seed: number): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => r() * 2 - 1);
}

/** Causal over the last T of S positions, with key 0 of batch row 1 blocked as padding. */
function biasFor({ B, T, S }: Case): number[] {
  const out: number[] = [];
  for (let b = 0; b < B; b++)
    for (let i = 0; i < T; i++)
      for (let j = 0; j < S; j++) {
        const future = j > S - T + i;
        const padding = b === 1 && j === 0 && j !== S - T + i;
        out.push(future || padding ? MASKED_SCORE : 0);
      }
  return out;
}

/** The same padding as a key bias (B, 1, 1, 1, S): what chunkedAttention's key-bias form takes. */
function keyBiasFor({ B, S }: Case): number[] {
  return Array.from({ length: B * S }, (_, i) => (Math.floor(i / S) === 1 && i % S === 0 ? MASKED_SCORE : 0));
}

/** A key bias on every row, as the (B, 1, 1, T, S) bias the reference takes (not causal). */
function everyRow({ B, T, S }: Case, keys: number[]): number[] {
  return Array.from({ length: B * T * S }, (_, i) => keys[Math.floor(i / (T * S)) * S + (i % S)]!);
}

function reference(c: Case, q: number[], k: number[], v: number[], bias: number[]): number[] {
  const { B, Hkv, G, T, S, dh } = c;
  const out: number[] = [];
  for (let b = 0; b < B; b++)
    for (let h = 0; h < Hkv; h++)
      for (let gi = 0; gi < G; gi++)
        for (let i = 0; i < T; i++) {
          const qi = q.slice(
            (((b * Hkv + h) * G + gi) * T + i) * dh,
            (((b * Hkv + h) * G + gi) * T + i + 1) * dh,
          );
          const scores = Array.from({ length: S }, (_, j) => {
            const kj = k.slice(((b * Hkv + h) * S + j) * dh, ((b * Hkv + h) * S + j + 1) * dh);
            return qi.reduce((s, u, d) => s + u * kj[d]!, 0) + bias[(b * T + i) * S + j]!;
          });
          const max = Math.max(...scores);
          const e = scores.map((s) => Math.exp(s - max));
          const z = e.reduce((s, u) => s + u, 0);
          for (let d = 0; d < dh; d++) {
            out.push(e.reduce((s, w, j) => s + (w / z) * v[((b * Hkv + h) * S + j) * dh + d]!, 0));
          }
        }
  return out;
}

/** One block, several blocks with padding rows, one row a block, a decoding step, a prefill after a cache. */
const CASES: { c: Case; block: number }[] = [
  { c: { B: 2, Hkv: 2, G: 2, T: 7, S: 7, dh: 4 }, block: 10_000 }, // one block
  { c: { B: 2, Hkv: 2, G: 2, T: 7, S: 7, dh: 4 }, block: 2 * 2 * 2 * 7 * 3 }, // 3 rows a block: 3 blocks, 2 pad rows
  { c: { B: 2, Hkv: 1, G: 3, T: 33, S: 33, dh: 8 }, block: 1 }, // one row a block
  { c: { B: 2, Hkv: 2, G: 2, T: 1, S: 9, dh: 4 }, block: 1 }, // decoding: one query, a cache of 8
  { c: { B: 1, Hkv: 2, G: 1, T: 5, S: 12, dh: 4 }, block: 2 * 2 * 12 }, // prefill after a cache of 7
];

/**
 * Every case, causal and not, through chunkedAttention over symbolic dims (the block plan is
 * computed at run time), against the plain reference with `reference bias` rows.
 */
async function expectReference(
  biasInput: { rows: 'seq' | 1; data: (c: Case) => number[] },
  referenceBias: (c: Case, causal: boolean) => number[],
  seed: number,
): Promise<void> {
  for (const [{ c, block }, causal] of CASES.flatMap((x) => [[x, false] as const, [x, true] as const])) {
    const { B, Hkv, G, T, S, dh } = c;
    const g = new Graph({ name: 'chunked_attention' });
    const q = g.input('q', 'float32', ['batch', Hkv, G, 'seq', dh]);
    const k = g.input('k', 'float32', ['batch', Hkv, 'total', dh]);
    const v = g.input('v', 'float32', ['batch', Hkv, 'total', dh]);
    const bias = g.input('bias', 'float32', ['batch', 1, 1, biasInput.rows, 'total']);
    g.output(chunkedAttention(q, k, v, bias, { scoreBlock: block, causal }), 'out');
    const session = await createSession(toModelBytes(g));
    const data = {
      q: randoms(B * Hkv * G * T * dh, seed),
      k: randoms(B * Hkv * S * dh, seed + 1),
      v: randoms(B * Hkv * S * dh, seed + 2),
    };
    const { out } = await session.run({
      q: f32(data.q, [B, Hkv, G, T, dh]),
      k: f32(data.k, [B, Hkv, S, dh]),
      v: f32(data.v, [B, Hkv, S, dh]),
      bias: f32(biasInput.data(c), [B, 1, 1, biasInput.rows === 1 ? 1 : T, S]),
    });
    await session.dispose();
    expect(out!.dims, JSON.stringify(c)).toEqual([B, Hkv, G, T, dh]);
    const want = reference(c, data.q, data.k, data.v, referenceBias(c, causal));
    const got = out!.data as Float32Array;
    const worst = want.reduce((m, w, i) => Math.max(m, Math.abs(got[i]! - w)), 0);
    expect(worst, `${JSON.stringify(c)} block ${block} causal ${causal}`).toBeLessThan(1e-5);
  }
}

describe('chunkedAttention', () => {
  it('equals plain softmax attention for one block, several blocks with padding rows, and a decoding step; causal blocks read only their keys', async () => {
    await expectReference({ rows: 'seq', data: biasFor }, (c) => biasFor(c), 1);
  });

  it('takes a key bias in place of the (T, S) one: causal rows rebuilt in each block, or the keys on every row', async () => {
    // causal: exactly attentionBias's rows (a padding key stays readable by its own query)
    await expectReference(
      { rows: 1, data: keyBiasFor },
      (c, causal) => (causal ? biasFor(c) : everyRow(c, keyBiasFor(c))),
      4,
    );
  });

  it('its gradients with respect to q, k and v match finite differences across blocks and padding rows (float64)', async () => {
    const c: Case = { B: 2, Hkv: 2, G: 2, T: 5, S: 5, dh: 3 };
    const { B, Hkv, G, T, S, dh } = c;
    // 2 query rows per block: blocks of rows {0,1}, {2,3}, {4 + one padding row}.
    const block = B * Hkv * G * S * 2;
    // The (T, S) bias, and the key bias whose causal rows are rebuilt in each block.
    const biases = [
      { shape: [B, 1, 1, T, S], data: biasFor(c) },
      { shape: [B, 1, 1, 1, S], data: keyBiasFor(c) },
    ];
    for (const causal of [false, true]) {
      for (const bias of biases) {
        await gradcheck(
          (q, k, v, b) => chunkedAttention(q, k, v, b, { scoreBlock: block, causal }),
          [
            { name: 'q', shape: [B, Hkv, G, T, dh] },
            { name: 'k', shape: [B, Hkv, S, dh] },
            { name: 'v', shape: [B, Hkv, S, dh] },
            { name: 'bias', ...bias, diff: false },
          ],
        );
      }
    }
  });

  it('refuses tensors of the wrong rank and a non-positive block, naming the path', () => {
    const g = new Graph({ name: 'bad' });
    const q = g.input('q', 'float32', [1, 1, 1, 4, 2]);
    const k = g.input('k', 'float32', [1, 1, 4, 2]);
    const bias = g.input('bias', 'float32', [1, 1, 1, 4, 4]);
    expect(() => chunkedAttention(q, q, k, bias)).toThrow(
      /chunkedAttention wants q .*k and v \(B, Hkv, S, dh\)/,
    );
    expect(() => chunkedAttention(q, k, k, bias, { scoreBlock: 0 })).toThrow(
      /scoreBlock 0 must be a positive/,
    );
  });
});
