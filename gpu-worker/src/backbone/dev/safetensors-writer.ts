import { writeFile } from 'node:fs/promises';
import { fromHalfBits, toHalfBits } from '../../util/half.ts';

/**
 * A safetensors writer for tests (https://github.com/huggingface/safetensors#format), written apart
 * from the loader so round-trip tests compare two implementations:
 *
 *   [ u64 LE: N ][ N bytes: JSON header, space-padded to 8 ][ tensors back to back ]
 *
 * Float tensors are given as float32 values and rounded to F16/BF16 (round to nearest even), or as
 * raw little-endian bytes when a test needs exact bit patterns.
 */

export type FloatDType = 'F32' | 'F16' | 'BF16';

export interface WriterTensor {
  dtype: FloatDType | string;
  shape: readonly number[];
  /** float32 values (converted to dtype) or the raw bytes as stored. */
  data: Float32Array | Uint8Array;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** bfloat16 bits of a float32 (its top half), rounded to nearest even. */
export function f32ToBf16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) return (x >>> 16) | 0x40;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bf16BitsToNumber(b: number): number {
  u32[0] = b << 16;
  return f32[0]!;
}

/** The float32 values a dtype actually stores for `data` (what a loader must give back). */
export function storedValues(dtype: FloatDType, data: Float32Array): Float32Array {
  if (dtype === 'F32') return Float32Array.from(data);
  const round =
    dtype === 'F16'
      ? (x: number) => fromHalfBits(toHalfBits(x))
      : (x: number) => bf16BitsToNumber(f32ToBf16Bits(x));
  return data.map(round);
}

/** The little-endian bytes of float32 values in dtype. */
export function encodeValues(dtype: FloatDType, data: Float32Array): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(Float32Array.from(data).buffer);
  const toBits = dtype === 'F16' ? toHalfBits : f32ToBf16Bits;
  const out = new Uint8Array(data.length * 2);
  const view = new DataView(out.buffer);
  for (let i = 0; i < data.length; i++) view.setUint16(2 * i, toBits(data[i]!), true);
  return out;
}

/** A file from a header (object, or JSON text to write verbatim) and a data section; lengths as given. */
export function safetensorsBytes(
  header: unknown,
  data: Uint8Array,
  opts: { headerLength?: bigint } = {},
): Uint8Array {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  let json = new TextEncoder().encode(text);
  const padded = Math.ceil(json.byteLength / 8) * 8;
  if (typeof header !== 'string' && padded !== json.byteLength) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + json.byteLength + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, opts.headerLength ?? BigInt(json.byteLength), true);
  out.set(json, 8);
  out.set(data, 8 + json.byteLength);
  return out;
}

/** Encodes tensors in the order given, back to back. */
export function encodeSafetensors(
  tensors: Record<string, WriterTensor>,
  metadata?: Record<string, string>,
): Uint8Array {
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {};
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const bytes = t.data instanceof Float32Array ? encodeValues(t.dtype as FloatDType, t.data) : t.data;
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes.byteLength] };
    parts.push(bytes);
    offset += bytes.byteLength;
  }
  const data = new Uint8Array(offset);
  let at = 0;
  for (const p of parts) {
    data.set(p, at);
    at += p.byteLength;
  }
  return safetensorsBytes(header, data);
}

export async function writeSafetensors(
  path: string,
  tensors: Record<string, WriterTensor>,
  metadata: Record<string, string> = { format: 'pt' },
): Promise<number> {
  const bytes = encodeSafetensors(tensors, metadata);
  await writeFile(path, bytes);
  return bytes.byteLength;
}
