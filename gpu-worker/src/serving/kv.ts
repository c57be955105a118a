import { f32, type Tensor } from '../runtime/index.ts';

/** The geometry of one model's KV cache: per layer (B, heads, S, headDim). */
export interface KvSpec {
  layers: number;
  heads: number;
  headDim: number;
}

/** One sequence's cache, unpadded: per layer (heads, len, headDim). */
export interface RowKv {
  len: number;
  keys: Float32Array[];
  values: Float32Array[];
}

/**
 * The cache of a running batch, left-padded to S columns: row b's real entries are its last
 * `lens[b]` columns (the padding is masked out). A decode step turns it into S + 1 columns for
 * every row at once; rows joining or leaving repack it (`rows` out, `pack` in), which is the only
 * time cache bytes are copied.
 *
 *   keys[l]  (B, H, S, dh)    row b, head h, column s at ((b * H + h) * S + s) * dh
 */
export class PackedKv {
  private constructor(
    readonly spec: KvSpec,
    readonly lens: readonly number[],
    readonly S: number,
    readonly keys: readonly Float32Array[],
    readonly values: readonly Float32Array[],
  ) {}

  get batch(): number {
    return this.lens.length;
  }

  /** Adopts a model's present outputs (no copy); `lens` are the rows' real lengths in them. */
  static fromTensors(spec: KvSpec, lens: readonly number[], keys: Tensor[], values: Tensor[]): PackedKv {
    const S = keys[0]?.dims[2] ?? 0;
    const data = (t: Tensor) => t.data as Float32Array;
    return new PackedKv(spec, [...lens], Number(S), keys.map(data), values.map(data));
  }

  /** Rows left-padded to the longest one. */
  static pack(spec: KvSpec, rows: readonly RowKv[]): PackedKv {
    const S = Math.max(0, ...rows.map((r) => r.len));
    const { layers, heads: H, headDim: dh } = spec;
    const keys: Float32Array[] = [];
    const values: Float32Array[] = [];
    for (let l = 0; l < layers; l++) {
      const k = new Float32Array(rows.length * H * S * dh);
      const v = new Float32Array(rows.length * H * S * dh);
      rows.forEach((r, b) => {
        for (let h = 0; h < H; h++) {
          const dst = ((b * H + h) * S + (S - r.len)) * dh;
          k.set(r.keys[l]!.subarray(h * r.len * dh, (h + 1) * r.len * dh), dst);
          v.set(r.values[l]!.subarray(h * r.len * dh, (h + 1) * r.len * dh), dst);
        }
      });
      keys.push(k);
      values.push(v);
    }
    return new PackedKv(
      spec,
      rows.map((r) => r.len),
      S,
      keys,
      values,
    );
  }

  /** Row b's cache, copied out unpadded. */
  row(b: number): RowKv {
    const { heads: H, headDim: dh } = this.spec;
    const len = this.lens[b]!;
    const S = this.S;
    const cut = (x: Float32Array) => {
      const out = new Float32Array(H * len * dh);
      for (let h = 0; h < H; h++) {
        const src = ((b * H + h) * S + (S - len)) * dh;
        out.set(x.subarray(src, src + len * dh), h * len * dh);
      }
      return out;
    };
    return { len, keys: this.keys.map(cut), values: this.values.map(cut) };
  }

  /** As model inputs (no copy). */
  tensors(): { keys: Tensor[]; values: Tensor[] } {
    const dims = [this.batch, this.spec.heads, this.S, this.spec.headDim];
    return { keys: this.keys.map((k) => f32(k, dims)), values: this.values.map((v) => f32(v, dims)) };
  }

  /** Bytes held (for the memory gauge). */
  get bytes(): number {
    return this.keys.reduce((n, k) => n + k.byteLength * 2, 0);
  }
}

/** Attention-mask row for a sequence with `len` cached tokens in S columns, plus `extra` new ones. */
export function maskRow(S: number, len: number, extra: number): number[] {
  const row = new Array<number>(S + extra).fill(1);
  row.fill(0, 0, S - len);
  return row;
}

/** Rows `idx` of a (B, ...) float tensor, as a new (idx.length, ...) tensor; the same one when idx is every row in order. */
export function selectRows(t: Tensor, idx: readonly number[]): Tensor {
  const B = Number(t.dims[0]);
  if (idx.length === B && idx.every((b, i) => b === i)) return t;
  const per = (t.data as Float32Array).length / B;
  const src = t.data as Float32Array;
  const out = new Float32Array(idx.length * per);
  for (const [i, b] of idx.entries()) out.set(src.subarray(b * per, (b + 1) * per), i * per);
  return f32(out, [idx.length, ...t.dims.slice(1).map(Number)]);
}

/** Columns [from, from + len) of one sequence's cache, per layer (heads, len, headDim) (copies). */
export function sliceRowKv(spec: KvSpec, r: RowKv, from: number, len: number): RowKv {
  const { heads: H, headDim: dh } = spec;
  const cut = (x: Float32Array) => {
    const out = new Float32Array(H * len * dh);
    for (let h = 0; h < H; h++) {
      const src = (h * r.len + from) * dh;
      out.set(x.subarray(src, src + len * dh), h * len * dh);
    }
    return out;
  };
  return { len, keys: r.keys.map(cut), values: r.values.map(cut) };
}

/** Caches of consecutive spans of one sequence, as one (copies). */
export function concatRowKv(spec: KvSpec, rows: readonly RowKv[]): RowKv {
  const { heads: H, headDim: dh, layers } = spec;
  const len = rows.reduce((n, r) => n + r.len, 0);
  const join = (pick: (r: RowKv) => Float32Array) => {
    const out = new Float32Array(H * len * dh);
    for (let h = 0; h < H; h++) {
      let at = h * len * dh;
      for (const r of rows) {
        out.set(pick(r).subarray(h * r.len * dh, (h + 1) * r.len * dh), at);
        at += r.len * dh;
      }
    }
    return out;
  };
  const keys: Float32Array[] = [];
  const values: Float32Array[] = [];
  for (let l = 0; l < layers; l++) {
    keys.push(join((r) => r.keys[l]!));
    values.push(join((r) => r.values[l]!));
  }
  return { len, keys, values };
}
