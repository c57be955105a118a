import * as ort from 'onnxruntime-node';

export type Tensor = ort.Tensor;

export function f32(data: Float32Array | readonly number[], dims: readonly number[]): ort.Tensor {
  return new ort.Tensor('float32', data instanceof Float32Array ? data : Float32Array.from(data), dims);
}

export function f64(data: Float64Array | readonly number[], dims: readonly number[]): ort.Tensor {
  return new ort.Tensor('float64', data instanceof Float64Array ? data : Float64Array.from(data), dims);
}

export function i64(data: BigInt64Array | readonly number[], dims: readonly number[]): ort.Tensor {
  return new ort.Tensor(
    'int64',
    data instanceof BigInt64Array ? data : BigInt64Array.from(data, (v) => BigInt(v)),
    dims,
  );
}

export function tensor(
  type: ort.Tensor.Type,
  data: ort.Tensor.DataType,
  dims: readonly number[],
): ort.Tensor {
  return new ort.Tensor(type as 'float32', data as Float32Array, dims);
}
