import { expect } from 'vitest';
import { Graph, grad, mul, reduceSum, toModelBytes, type Value } from '../../gpu-worker/src/graph/index.ts';
import { createSession, tensor } from '../../gpu-worker/src/runtime/index.ts';
import { Rng } from '../../gpu-worker/src/util/rng.ts';

/** Deterministic uniform [0, 1) numbers from a seed (the worker's mulberry32 Rng). */
export function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.next();
}

export interface CheckInput {
  name: string;
  shape: number[];
  /** Values; random in [-1, 1) when omitted. */
  data?: number[];
  dtype?: 'float32' | 'float64' | 'int64';
  /** Differentiate with respect to this input (default: every float input). */
  diff?: boolean;
}

export interface GradcheckOptions {
  dtype?: 'float32' | 'float64';
  /** Central-difference step. */
  eps?: number;
  /** Max allowed |analytic - numeric| / max(1, |numeric|). */
  tol?: number;
  seed?: number;
}

/**
 * Finite-difference check of the engine's autodiff: builds out = f(inputs), the scalar
 * loss = sum(out * R) with a fixed random R, differentiates it with `grad`, runs the model in
 * onnxruntime, and compares every gradient element with a central difference of the loss.
 */
export async function gradcheck(
  f: (...xs: Value[]) => Value,
  inputs: CheckInput[],
  opts: GradcheckOptions = {},
): Promise<{ maxErr: number }> {
  const dtype = opts.dtype ?? 'float64';
  const eps = opts.eps ?? (dtype === 'float64' ? 1e-6 : 1e-2);
  const tol = opts.tol ?? (dtype === 'float64' ? 1e-6 : 2e-2);
  const rand = rng(opts.seed ?? 1);
  const g = new Graph({ name: 'gradcheck' });
  const xs = inputs.map((i) => g.input(i.name, i.dtype ?? dtype, i.shape));
  const out = f(...xs);
  const shape = out.shape.map((d) => {
    if (typeof d !== 'number') throw new Error(`gradcheck needs static output shapes, got ${out}`);
    return d;
  });
  const n = shape.reduce((a, b) => a * b, 1);
  const weights = Array.from({ length: n }, () => rand() * 2 - 1);
  const w = g.constant(
    out.dtype,
    shape,
    out.dtype === 'float64' ? Float64Array.from(weights) : Float32Array.from(weights),
  );
  const loss = reduceSum(mul(out, w), undefined, { keepdims: false });
  const wrt = xs.filter((x, i) => (inputs[i]!.diff ?? x.dtype !== 'int64') && x.dtype !== 'int64');
  const grads = grad(loss, wrt);
  g.output(loss, 'loss');
  for (const [i, gr] of grads.entries()) g.output(gr, `grad_${wrt[i]!.name}`);
  const session = await createSession(toModelBytes(g), { graphOptimization: 'disabled' });

  const data = inputs.map((i) => {
    const numel = i.shape.reduce((a, b) => a * b, 1);
    const vals = i.data ?? Array.from({ length: numel }, () => rand() * 2 - 1);
    if (vals.length !== numel)
      throw new Error(`gradcheck input ${i.name}: ${vals.length} values for shape ${i.shape}`);
    return vals;
  });
  const feeds = () =>
    Object.fromEntries(
      inputs.map((i, k) => {
        const t = i.dtype ?? dtype;
        const arr =
          t === 'int64'
            ? BigInt64Array.from(data[k]!, (v) => BigInt(v))
            : t === 'float64'
              ? Float64Array.from(data[k]!)
              : Float32Array.from(data[k]!);
        return [i.name, tensor(t, arr, i.shape)];
      }),
    );
  const lossAt = async () => Number((await session.run(feeds(), ['loss'])).loss!.data[0]);

  const analytic = await session.run(feeds());
  let maxErr = 0;
  for (const x of wrt) {
    const k = inputs.findIndex((i) => i.name === x.name);
    const got = analytic[`grad_${x.name}`]!.data as Float64Array | Float32Array;
    expect(got.length, `gradient of ${x.name} has the input's size`).toBe(data[k]!.length);
    for (let e = 0; e < data[k]!.length; e++) {
      const orig = data[k]![e]!;
      data[k]![e] = orig + eps;
      const up = await lossAt();
      data[k]![e] = orig - eps;
      const down = await lossAt();
      data[k]![e] = orig;
      const numeric = (up - down) / (2 * eps);
      const err = Math.abs(got[e]! - numeric) / Math.max(1, Math.abs(numeric));
      maxErr = Math.max(maxErr, err);
      if (err > tol) {
        expect.fail(
          `d loss / d ${x.name}[${e}]: autodiff ${got[e]} vs finite difference ${numeric} (err ${err})`,
        );
      }
    }
  }
  await session.dispose();
  return { maxErr };
}
