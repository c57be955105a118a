import { f32, i64, type Session, type Tensor } from '../runtime/index.ts';
import type { SideNetShape } from '../side-net/config.ts';
import { sideNetParams } from '../side-net/params.ts';
import { STACKED_IO, stackedShape } from '../side-net/stacked.ts';
import { SIDE_IO } from '../side-net/steps.ts';
import type { ReadyAdapter } from './adapters.ts';
import type { SideModel } from './model.ts';

/** Adapters of one shape stacked on a leading axis: the weight inputs of the stacked sessions. */
export interface AdapterStack {
  /** The side shape's key (SideModel.key). */
  shapeKey: string;
  /** Adapter keys in stack order. */
  keys: readonly string[];
  at: ReadonlyMap<string, number>;
  /** `adapter.<name>` (A, ...shape) float32, a vector (n) as (A, 1, n). */
  tensors: Readonly<Record<string, Tensor>>;
  bytes: number;
}

/** Copies each adapter's weights into one (A, ...shape) tensor per parameter ((A, 1, n) for a vector). */
export function stackAdapters(
  shapeKey: string,
  shape: SideNetShape,
  adapters: readonly ReadyAdapter[],
): AdapterStack {
  const A = adapters.length;
  const tensors: Record<string, Tensor> = {};
  let bytes = 0;
  for (const p of sideNetParams(shape)) {
    const name = SIDE_IO.param(p.name);
    const size = p.shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(A * size);
    adapters.forEach((a, i) => {
      const w = a.tensors[name]?.data as Float32Array | undefined;
      if (!w || w.length !== size)
        throw new Error(`adapter ${a.key}: ${p.name} has ${w?.length ?? 0} values, its shape needs ${size}`);
      data.set(w, i * size);
    });
    tensors[name] = f32(data, [A, ...stackedShape(p.shape)], p.name);
    bytes += data.byteLength;
  }
  const keys = adapters.map((a) => a.key);
  return { shapeKey, keys, at: new Map(keys.map((k, i) => [k, i])), tensors, bytes };
}

/** Each row's place in the stack, as the stacked sessions' `adapter_index` feed. */
export function adapterIndex(stack: AdapterStack, rowKeys: readonly string[]): Record<string, Tensor> {
  const idx = rowKeys.map((k) => {
    const i = stack.at.get(k);
    if (i === undefined) throw new Error(`adapter ${k} is not in the stack`);
    return i;
  });
  return { [STACKED_IO.adapterIndex]: i64(idx, [idx.length]) };
}

/**
 * Recently built stacks, so a running batch builds its stack once per change of its adapter set,
 * not per decode step. A stack holding every adapter asked for is reused while at most half of
 * it is stale; the least recently used is dropped beyond `capacity`.
 */
export class StackCache {
  private entries: AdapterStack[] = [];
  readonly stats = { hits: 0, builds: 0 };

  constructor(readonly capacity = 4) {}

  get(shapeKey: string, shape: SideNetShape, adapters: readonly ReadyAdapter[]): AdapterStack {
    const unique = [...new Map(adapters.map((a) => [a.key, a])).values()];
    const fits = (s: AdapterStack) =>
      s.shapeKey === shapeKey && s.keys.length <= 2 * unique.length && unique.every((a) => s.at.has(a.key));
    const hit = this.entries.find(fits);
    if (hit) {
      this.stats.hits++;
      this.entries = [hit, ...this.entries.filter((s) => s !== hit)];
      return hit;
    }
    const built = stackAdapters(shapeKey, shape, unique);
    this.stats.builds++;
    this.entries = [built, ...this.entries].slice(0, this.capacity);
    return built;
  }

  get bytes(): number {
    return this.entries.reduce((n, s) => n + s.bytes, 0);
  }
}

/** A side-net session and the weight feeds for a batch of rows of one shape. */
export interface SidePass {
  session: Session;
  weights: Record<string, Tensor>;
  /** The stack the weights come from; undefined when every row runs one adapter. */
  stack: AdapterStack | undefined;
}

/**
 * How rows of one side shape run in one pass: rows that all run one adapter take its own weights
 * on the single-adapter session (no per-row copies); rows of several adapters take a stack of
 * them on the stacked session, each row gathering its adapter's weights. `alsoStack` joins the
 * stack without rows (adapters of running rows), so later steps can reuse it.
 */
export function sidePass(
  stacks: StackCache,
  side: SideModel,
  rows: readonly ReadyAdapter[],
  alsoStack: readonly ReadyAdapter[] = [],
): SidePass {
  const first = rows[0];
  if (!first) throw new Error('sidePass: no rows');
  if (rows.every((a) => a.key === first.key)) {
    return { session: side.step, weights: first.tensors, stack: undefined };
  }
  const stack = stacks.get(side.key, side.shape, [...rows, ...alsoStack]);
  const weights = {
    ...stack.tensors,
    ...adapterIndex(
      stack,
      rows.map((a) => a.key),
    ),
  };
  return { session: side.stacked, weights, stack };
}
