import type { TensorDtype, TensorInfo } from '@ladder/schemas';

/**
 * A small safetensors codec (https://github.com/huggingface/safetensors#format):
 *
 *   [ u64 LE: N ][ N bytes: JSON header, space-padded ][ data: every tensor, back to back ]
 *
 * header = { "__metadata__"?: { string: string }, "<name>": { dtype, shape, data_offsets: [b, e] } }
 * with offsets relative to the data section. Decoding is strict, as the reference reader is:
 * offsets in range, tensors contiguous with no holes or overlaps, byte length = numel x dtype
 * size. Every error names the source (file or key) and the field.
 */

export const DTYPE_BYTES: Record<TensorDtype, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

/** The reference implementation refuses headers over 100 MB; so do we, before parsing. */
const MAX_HEADER_BYTES = 100_000_000;

// Typed-array views below assume the host's byte order is safetensors' (little-endian).
if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error('adapters: safetensors views need a little-endian host');
}

export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
}

/** A tensor decoded from (or for) a safetensors file; `data` is its raw little-endian bytes. */
export interface RawTensor extends TensorInfo {
  data: Uint8Array;
}

export type TensorData =
  | Float64Array
  | Float32Array
  | Uint16Array
  | BigInt64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint8Array;

export interface TensorInput {
  dtype: TensorDtype;
  shape: readonly number[];
  /** F16/BF16 as raw Uint16Array bits; BOOL as Uint8Array of 0/1. */
  data: TensorData;
}

export interface DecodedSafetensors {
  tensors: RawTensor[];
  metadata: Record<string, string>;
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Encodes tensors in the order given; the header is padded so data starts 8-byte aligned. */
export function encodeSafetensors(
  tensors: Record<string, TensorInput>,
  metadata: Record<string, string> = {},
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  const parts: Uint8Array[] = [];
  for (const [name, t] of Object.entries(tensors)) {
    if (name === '__metadata__' || name.length === 0) {
      throw new SafetensorsError(`encode: tensor name ${JSON.stringify(name)} is reserved or empty`);
    }
    const size = DTYPE_BYTES[t.dtype];
    if (size === undefined) throw new SafetensorsError(`encode: tensor "${name}": unknown dtype ${t.dtype}`);
    const want = numel(t.shape) * size;
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    if (bytes.byteLength !== want) {
      throw new SafetensorsError(
        `encode: tensor "${name}": ${t.dtype} [${t.shape.join(', ')}] needs ${want} bytes, data has ${bytes.byteLength}`,
      );
    }
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + want] };
    parts.push(bytes);
    offset += want;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil((8 + json.byteLength) / 8) * 8 - 8;
  if (padded !== json.byteLength) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + json.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  out.set(json, 8);
  let at = 8 + json.byteLength;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** Decodes and validates; tensors come back in data order, as views into `bytes` (no copy). */
export function decodeSafetensors(bytes: Uint8Array, source = 'safetensors'): DecodedSafetensors {
  const fail = (msg: string): never => {
    throw new SafetensorsError(`${source}: ${msg}`);
  };
  if (bytes.byteLength < 8) fail(`${bytes.byteLength} bytes is too short for the 8-byte header length`);
  const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(Math.min(MAX_HEADER_BYTES, bytes.byteLength - 8))) {
    fail(
      `header length ${n} exceeds the file (${bytes.byteLength} bytes) or the ${MAX_HEADER_BYTES}-byte limit`,
    );
  }
  const headerLen = Number(n);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLen)));
  } catch (e) {
    fail(`header is not UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header))
    fail('header is not a JSON object');
  const dataStart = 8 + headerLen;
  const dataLen = bytes.byteLength - dataStart;
  const metadata: Record<string, string> = {};
  const entries: { name: string; dtype: TensorDtype; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
        fail('__metadata__ is not an object');
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`__metadata__.${k} is not a string`);
        metadata[k] = v as string;
      }
      continue;
    }
    entries.push(parseEntry(name, raw, dataLen, fail));
  }
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expect = 0;
  for (const e of entries) {
    if (e.begin !== expect) {
      fail(
        e.begin > expect
          ? `tensor "${e.name}": data_offsets begin at ${e.begin}, leaving a hole at [${expect}, ${e.begin})`
          : `tensor "${e.name}": data_offsets [${e.begin}, ${e.end}] overlap the previous tensor (ends at ${expect})`,
      );
    }
    expect = e.end;
  }
  if (expect !== dataLen) fail(`tensors cover ${expect} data bytes but the data section has ${dataLen}`);
  const tensors = entries.map(({ name, dtype, shape, begin, end }) => ({
    name,
    dtype,
    shape,
    data: bytes.subarray(dataStart + begin, dataStart + end),
  }));
  return { tensors, metadata };
}

function parseEntry(
  name: string,
  raw: unknown,
  dataLen: number,
  fail: (msg: string) => never,
): { name: string; dtype: TensorDtype; shape: number[]; begin: number; end: number } {
  const where = `tensor "${name}"`;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail(`${where} is not an object`);
  const { dtype, shape, data_offsets, ...rest } = raw as Record<string, unknown>;
  const extra = Object.keys(rest);
  if (extra.length) fail(`${where}: unknown field(s) ${extra.join(', ')}`);
  if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) {
    fail(`${where}: dtype ${JSON.stringify(dtype)} is not one of ${Object.keys(DTYPE_BYTES).join('/')}`);
  }
  const isDim = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0;
  if (!Array.isArray(shape) || !shape.every(isDim)) fail(`${where}: shape must be an array of integers >= 0`);
  if (!Array.isArray(data_offsets) || data_offsets.length !== 2 || !data_offsets.every(isDim)) {
    fail(`${where}: data_offsets must be [begin, end] integers >= 0`);
  }
  const [begin, end] = data_offsets as [number, number];
  if (begin > end || end > dataLen) {
    fail(`${where}: data_offsets [${begin}, ${end}] out of range of the ${dataLen}-byte data section`);
  }
  const d = dtype as TensorDtype;
  const need = numel(shape as number[]) * DTYPE_BYTES[d];
  if (end - begin !== need) {
    fail(
      `${where}: data_offsets [${begin}, ${end}] span ${end - begin} bytes but ${d} [${(shape as number[]).join(', ')}] needs ${need}`,
    );
  }
  return { name, dtype: d, shape: shape as number[], begin, end };
}

/**
 * A typed view of a tensor's bytes (F16/BF16 as Uint16Array bits, BOOL as Uint8Array), copied
 * only when the bytes are not aligned for the element size (a Buffer from the pool may not be).
 */
export function tensorView(t: RawTensor): TensorData {
  const size = DTYPE_BYTES[t.dtype];
  // `new Uint8Array(view)` copies (Buffer#slice would not) into a fresh, aligned buffer.
  const bytes = t.data.byteOffset % size === 0 ? t.data : new Uint8Array(t.data);
  const { buffer, byteOffset } = bytes;
  const length = bytes.byteLength / size;
  switch (t.dtype) {
    case 'F64':
      return new Float64Array(buffer, byteOffset, length);
    case 'F32':
      return new Float32Array(buffer, byteOffset, length);
    case 'F16':
    case 'BF16':
      return new Uint16Array(buffer, byteOffset, length);
    case 'I64':
      return new BigInt64Array(buffer, byteOffset, length);
    case 'I32':
      return new Int32Array(buffer, byteOffset, length);
    case 'I16':
      return new Int16Array(buffer, byteOffset, length);
    case 'I8':
      return new Int8Array(buffer, byteOffset, length);
    case 'U8':
    case 'BOOL':
      return new Uint8Array(buffer, byteOffset, length);
  }
}
