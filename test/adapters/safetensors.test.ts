import { describe, expect, it } from 'vitest';
import {
  DTYPE_BYTES,
  decodeSafetensors,
  encodeSafetensors,
  type TensorInput,
  tensorView,
} from '../../adapters/index.ts';

const enc = (s: string) => new TextEncoder().encode(s);

/** A file built by hand from the format spec, independent of the encoder under test. */
function handMade(header: string, data: number[] | Uint8Array): Uint8Array {
  const h = enc(header);
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

const f32le = (...xs: number[]) => new Uint8Array(new Float32Array(xs).buffer);

describe('safetensors codec', () => {
  it('decodes a file written by hand from the spec', () => {
    const file = handMade(
      '{"__metadata__":{"format":"pt"},"b":{"dtype":"I64","shape":[1],"data_offsets":[8,16]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}',
      [...f32le(1.5, -2), 7, 0, 0, 0, 0, 0, 0, 0],
    );
    const { tensors, metadata } = decodeSafetensors(file, 'hand.safetensors');
    expect(metadata).toEqual({ format: 'pt' });
    expect(tensors.map((t) => t.name)).toEqual(['a', 'b']); // data order, not header order
    expect(Array.from(tensorView(tensors[0]!) as Float32Array)).toEqual([1.5, -2]);
    expect(Array.from(tensorView(tensors[1]!) as BigInt64Array)).toEqual([7n]);
  });

  it('round-trips every dtype and pads the header so data is 8-byte aligned', () => {
    const tensors: Record<string, TensorInput> = {
      f64: { dtype: 'F64', shape: [2], data: new Float64Array([Math.PI, -1]) },
      f32: { dtype: 'F32', shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
      f16: { dtype: 'F16', shape: [3], data: new Uint16Array([0x3c00, 0xc000, 0]) },
      bf16: { dtype: 'BF16', shape: [1], data: new Uint16Array([0x3f80]) },
      i64: { dtype: 'I64', shape: [2], data: new BigInt64Array([-(2n ** 40n), 3n]) },
      i32: { dtype: 'I32', shape: [1], data: new Int32Array([-5]) },
      i16: { dtype: 'I16', shape: [1], data: new Int16Array([-300]) },
      i8: { dtype: 'I8', shape: [2], data: new Int8Array([-1, 1]) },
      u8: { dtype: 'U8', shape: [3], data: new Uint8Array([0, 128, 255]) },
      bool: { dtype: 'BOOL', shape: [2], data: new Uint8Array([1, 0]) },
      scalar: { dtype: 'F32', shape: [], data: new Float32Array([42]) },
      empty: { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
    };
    const file = encodeSafetensors(tensors, { note: 'x' });
    const headerLen = Number(new DataView(file.buffer).getBigUint64(0, true));
    expect((8 + headerLen) % 8).toBe(0);
    const { tensors: out, metadata } = decodeSafetensors(file);
    expect(metadata).toEqual({ note: 'x' });
    expect(out.map((t) => t.name)).toEqual(Object.keys(tensors));
    for (const t of out) {
      const src = tensors[t.name]!;
      expect(t.dtype).toBe(src.dtype);
      expect(t.shape).toEqual(src.shape);
      expect(Array.from(tensorView(t) as ArrayLike<unknown>)).toEqual(
        Array.from(src.data as ArrayLike<unknown>),
      );
      expect(t.data.byteLength).toBe(src.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype]);
    }
  });

  it('copies only when a view would be misaligned', () => {
    const file = encodeSafetensors({ x: { dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) } });
    const shifted = new Uint8Array(file.byteLength + 1);
    shifted.set(file, 1);
    const t = decodeSafetensors(shifted.subarray(1)).tensors[0]!;
    expect(t.data.byteOffset % 4).not.toBe(0);
    expect(Array.from(tensorView(t) as Float32Array)).toEqual([1, 2]);
    const aligned = decodeSafetensors(file).tensors[0]!;
    expect((tensorView(aligned) as Float32Array).buffer).toBe(file.buffer);
  });

  it('refuses encoding data that does not match the shape', () => {
    expect(() => encodeSafetensors({ w: { dtype: 'F32', shape: [3], data: new Float32Array(2) } })).toThrow(
      /tensor "w": F32 \[3\] needs 12 bytes, data has 8/,
    );
  });

  const cases: [string, Uint8Array, RegExp][] = [
    ['too short', new Uint8Array(4), /too short/],
    [
      'header longer than the file',
      handMade('{}', []).map((b, i) => (i === 0 ? 200 : b)),
      /header length 200 exceeds/,
    ],
    ['header not JSON', handMade('{nope', []), /not UTF-8 JSON/],
    ['header not an object', handMade('[1]', []), /not a JSON object/],
    [
      'bad dtype',
      handMade('{"w":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}}', [0]),
      /tensor "w": dtype "F8"/,
    ],
    [
      'negative dim',
      handMade('{"w":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}}', []),
      /tensor "w": shape/,
    ],
    [
      'fractional dim',
      handMade('{"w":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}}', [0]),
      /tensor "w": shape/,
    ],
    [
      'offsets out of range',
      handMade('{"w":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}', [0, 0]),
      /out of range/,
    ],
    [
      'reversed offsets',
      handMade('{"w":{"dtype":"U8","shape":[0],"data_offsets":[2,1]}}', [0, 0]),
      /out of range/,
    ],
    [
      'size mismatch',
      handMade('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', [0, 0, 0, 0]),
      /span 4 bytes but F32 \[2\] needs 8/,
    ],
    [
      'hole',
      handMade('{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', [0, 0]),
      /tensor "a": data_offsets begin at 1, leaving a hole/,
    ],
    [
      'overlap',
      handMade(
        '{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}',
        [0, 0],
      ),
      /overlap/,
    ],
    [
      'trailing bytes',
      handMade('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', [0, 9]),
      /cover 1 data bytes but the data section has 2/,
    ],
    ['metadata not strings', handMade('{"__metadata__":{"n":1}}', []), /__metadata__\.n is not a string/],
    [
      'unknown field',
      handMade('{"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0],"x":1}}', []),
      /unknown field\(s\) x/,
    ],
    ['missing offsets', handMade('{"a":{"dtype":"U8","shape":[0]}}', []), /data_offsets must be/],
  ];
  it.each(cases)('refuses a file with %s, naming the file and field', (_what, file, message) => {
    expect(() => decodeSafetensors(file, 'weights.safetensors')).toThrow(message);
    expect(() => decodeSafetensors(file, 'weights.safetensors')).toThrow(/^weights\.safetensors: /);
  });
});
