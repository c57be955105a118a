import { f32, type Tensor } from '../runtime/index.ts';
import type { SideNetShape } from '../side-net/config.ts';
import { sideNetParams } from '../side-net/params.ts';
import { rowShape } from '../side-net/stacked.ts';
import { SIDE_IO } from '../side-net/steps.ts';
import type { ReadyAdapter } from './adapters.ts';

/**
 * A group's new row order after a membership change: each row that leaves takes the last row
 * into its slot (swap-remove), newcomers go after. Rows that stay keep their slot unless they
 * were last, so only moved rows and newcomers need their data copied.
 *
 *   prev  [a b c d e]   c and e leave, f joins   ->   [a b d f]   moves: 3 -> 2
 */
export interface RowPlan<T> {
  order: T[];
  /** Rows that stay: order[0..kept), at their old slot or moved in by `moves`. */
  kept: number;
  /** Old slot -> new slot, each source at or past `kept` (so copies in place never overlap). */
  moves: { from: number; to: number }[];
}

export function swapRemovePlan<T>(
  prev: readonly T[],
  stays: (row: T) => boolean,
  added: readonly T[],
): RowPlan<T> {
  const order = [...prev];
  const source = prev.map((_, i) => i);
  let n = order.length;
  for (let i = 0; i < n; ) {
    if (stays(order[i]!)) {
      i++;
      continue;
    }
    n--;
    order[i] = order[n]!; // checked again: it may be leaving too
    source[i] = source[n]!;
  }
  const moves: RowPlan<T>['moves'] = [];
  for (let to = 0; to < n; to++) if (source[to] !== to) moves.push({ from: source[to]!, to });
  return { order: [...order.slice(0, n), ...added], kept: n, moves };
}

interface ParamSlot {
  name: string; // `adapter.<name>`
  size: number; // floats per row
  dims: number[]; // one row's dims
}

function paramSlots(shape: SideNetShape): ParamSlot[] {
  return sideNetParams(shape).map((p) => ({
    name: SIDE_IO.param(p.name),
    size: p.shape.reduce((a, b) => a * b, 1),
    dims: rowShape(p.shape),
  }));
}

function rowData(a: ReadyAdapter, slot: ParamSlot): Float32Array {
  const w = a.tensors[slot.name]?.data as Float32Array | undefined;
  if (!w || w.length !== slot.size)
    throw new Error(
      `adapter ${a.key}: ${slot.name} has ${w?.length ?? 0} values, its shape needs ${slot.size}`,
    );
  return w;
}

/** The stacked session's weights for `rows`, row b from rows[b]: `adapter.<name>` (n, ...row dims). */
export function stackRows(shape: SideNetShape, rows: readonly ReadyAdapter[]): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const slot of paramSlots(shape)) {
    const data = new Float32Array(rows.length * slot.size);
    rows.forEach((a, b) => {
      data.set(rowData(a, slot), b * slot.size);
    });
    out[slot.name] = f32(data, [rows.length, ...slot.dims]);
  }
  return out;
}

/**
 * The stacked weights of a running group, kept across decode steps: a decode step copies no
 * weights, a membership change copies only the rows that joined or moved (RowPlan). Buffers
 * grow by doubling and shrink when under a quarter full; the tensors fed are views of their
 * first `rows` rows.
 */
export class RowWeights {
  private readonly slots: ParamSlot[];
  private buffers: Float32Array[];
  private capacity = 0;
  private n = 0;
  private views: Record<string, Tensor> | undefined;

  constructor(
    shape: SideNetShape,
    rows: readonly ReadyAdapter[],
    /** Told the rows copied (joins, moves, growth): the only weight copies the group makes. */
    private readonly onCopy: (rows: number) => void = () => {},
  ) {
    this.slots = paramSlots(shape);
    this.buffers = this.slots.map(() => new Float32Array(0));
    this.apply({ kept: 0, moves: [] }, rows);
  }

  get rows(): number {
    return this.n;
  }

  /** Applies a plan's moves, drops rows past `kept`, appends `added` (the plan's newcomers). */
  apply(plan: Pick<RowPlan<unknown>, 'kept' | 'moves'>, added: readonly ReadyAdapter[]): void {
    for (const [i, slot] of this.slots.entries()) {
      const buf = this.buffers[i]!;
      for (const { from, to } of plan.moves)
        buf.copyWithin(to * slot.size, from * slot.size, (from + 1) * slot.size);
    }
    this.onCopy(plan.moves.length);
    this.n = plan.kept;
    this.reserve(this.n + added.length);
    for (const [i, slot] of this.slots.entries()) {
      const buf = this.buffers[i]!;
      added.forEach((a, k) => {
        buf.set(rowData(a, slot), (this.n + k) * slot.size);
      });
    }
    this.n += added.length;
    this.onCopy(added.length);
    this.views = undefined;
  }

  /** `adapter.<name>` (rows, ...row dims) over the buffers (no copy). */
  get tensors(): Record<string, Tensor> {
    if (!this.views) {
      const views: Record<string, Tensor> = {};
      for (const [i, slot] of this.slots.entries()) {
        views[slot.name] = f32(this.buffers[i]!.subarray(0, this.n * slot.size), [this.n, ...slot.dims]);
      }
      this.views = views;
    }
    return this.views;
  }

  get bytes(): number {
    return this.buffers.reduce((n, b) => n + b.byteLength, 0);
  }

  private reserve(rows: number): void {
    const shrink = rows < this.capacity / 4;
    if (rows <= this.capacity && !shrink) return;
    const capacity = shrink ? 2 * rows : Math.max(rows, 2 * this.capacity);
    this.buffers = this.buffers.map((old, i) => {
      const grown = new Float32Array(capacity * this.slots[i]!.size);
      grown.set(old.subarray(0, this.n * this.slots[i]!.size));
      return grown;
    });
    this.onCopy(this.n);
    this.capacity = capacity;
  }
}
