import * as ort from 'onnxruntime-node';

export type Tensor = ort.Tensor;

/** The element types the engine feeds and reads, by their ONNX Runtime names. */
export type TensorType = 'float32' | 'float64' | 'int64' | 'int32' | 'bool' | 'uint8';

type ArrayOf = {
  float32: Float32Array;
  float64: Float64Array;
  int64: BigInt64Array;
  int32: Int32Array;
  bool: Uint8Array;
  uint8: Uint8Array;
};

/** Data a tensor of type T accepts: its typed array, or plain numbers (booleans for bool). */
export type TensorData<T extends TensorType> = ArrayOf[T] | readonly number[] | readonly boolean[];

const TYPED: { [T in TensorType]: (xs: readonly (number | boolean)[]) => ArrayOf[T] } = {
  float32: (xs) => Float32Array.from(xs, Number),
  float64: (xs) => Float64Array.from(xs, Number),
  int64: (xs) => BigInt64Array.from(xs, (v) => BigInt(integer(v))),
  int32: (xs) => Int32Array.from(xs, (v) => integer(v)),
  bool: (xs) => Uint8Array.from(xs, (v) => (v ? 1 : 0)),
  uint8: (xs) => Uint8Array.from(xs, (v) => integer(v)),
};

const CTOR: { [T in TensorType]: new (n: number) => ArrayOf[T] } = {
  float32: Float32Array,
  float64: Float64Array,
  int64: BigInt64Array,
  int32: Int32Array,
  bool: Uint8Array,
  uint8: Uint8Array,
};

function integer(v: number | boolean): number {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new Error(`${v} is not an integer`);
  return n;
}

function describe(name: string | undefined): string {
  return name === undefined ? 'tensor' : `tensor '${name}'`;
}

/**
 * Check that `dims` is a shape (non-negative integers) holding exactly `length` elements; the
 * error names the tensor, so a bad feed points at its input.
 */
export function checkShape(dims: readonly number[], length: number, name?: string): void {
  const bad = dims.findIndex((d) => !Number.isSafeInteger(d) || d < 0);
  if (bad >= 0) {
    throw new Error(`${describe(name)}: dim ${bad} of [${dims.join(', ')}] is not a non-negative integer`);
  }
  const size = dims.reduce((a, b) => a * b, 1);
  if (size !== length) {
    throw new Error(
      `${describe(name)}: shape [${dims.join(', ')}] holds ${size} elements but the data has ${length}`,
    );
  }
}

/**
 * A tensor of `type` over `data` (used as is when it is already the right typed array, so a
 * large buffer goes in without a copy). `name` only labels errors.
 */
export function tensor<T extends TensorType>(
  type: T,
  data: TensorData<T>,
  dims: readonly number[],
  name?: string,
): ort.Tensor {
  if (!(type in CTOR)) {
    throw new Error(`${describe(name)}: unsupported type '${type}' (use ${Object.keys(CTOR).join(', ')})`);
  }
  let typed: ArrayOf[T];
  if (data instanceof CTOR[type]) typed = data as ArrayOf[T];
  else if (Array.isArray(data)) {
    try {
      typed = TYPED[type](data as readonly (number | boolean)[]);
    } catch (err) {
      throw new Error(`${describe(name)} (${type}): ${(err as Error).message}`);
    }
  } else {
    const got = (data as object)?.constructor?.name ?? typeof data;
    throw new Error(
      `${describe(name)}: ${type} data must be a ${CTOR[type].name} or a number array, got ${got}`,
    );
  }
  checkShape(dims, typed.length, name);
  return new ort.Tensor(type as 'float32', typed as Float32Array, [...dims]);
}

/** A tensor of zeros. */
export function zeros(type: TensorType, dims: readonly number[], name?: string): ort.Tensor {
  const n = dims.reduce((a, b) => a * b, 1);
  checkShape(dims, n, name); // rejects negative or fractional dims
  return new ort.Tensor(type as 'float32', new CTOR[type](n) as Float32Array, [...dims]);
}

export const f32 = (data: TensorData<'float32'>, dims: readonly number[], name?: string) =>
  tensor('float32', data, dims, name);
/** A float16 tensor over its raw half bits (onnxruntime-node takes float16 data as a Uint16Array). */
export function f16(bits: Uint16Array, dims: readonly number[], name?: string): ort.Tensor {
  checkShape(dims, bits.length, name);
  return new ort.Tensor('float16', bits, [...dims]);
}
export const f64 = (data: TensorData<'float64'>, dims: readonly number[], name?: string) =>
  tensor('float64', data, dims, name);
export const i64 = (data: TensorData<'int64'>, dims: readonly number[], name?: string) =>
  tensor('int64', data, dims, name);
export const i32 = (data: TensorData<'int32'>, dims: readonly number[], name?: string) =>
  tensor('int32', data, dims, name);
export const bool = (data: TensorData<'bool'>, dims: readonly number[], name?: string) =>
  tensor('bool', data, dims, name);
export const u8 = (data: TensorData<'uint8'>, dims: readonly number[], name?: string) =>
  tensor('uint8', data, dims, name);

/**
 * A tensor's elements as plain numbers, row-major: int64 converts (and refuses values past 2^53,
 * which a number cannot hold exactly), bool reads as 0/1.
 */
export function toArray(t: ort.Tensor, name?: string): number[] {
  const data = t.data;
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) {
    return Array.from(data, (v, i) => {
      const n = Number(v);
      if (!Number.isSafeInteger(n)) throw new Error(`${describe(name)}: element ${i} (${v}) exceeds 2^53`);
      return n;
    });
  }
  if (typeof data === 'string' || (Array.isArray(data) && typeof data[0] === 'string')) {
    throw new Error(`${describe(name)}: ${t.type} tensors hold strings, not numbers`);
  }
  return Array.from(data as ArrayLike<number>, Number);
}

/** The one element of a single-element tensor (a loss, a step count), as a number. */
export function toScalar(t: ort.Tensor, name?: string): number {
  if (t.size !== 1) {
    throw new Error(`${describe(name)}: expected one element, got shape [${t.dims.join(', ')}]`);
  }
  return toArray(t, name)[0]!;
}
