import type { FileHandle } from 'node:fs/promises';
import type { SourceDType } from '../types.ts';
import { fail } from './errors.ts';

/**
 * The safetensors layout (https://github.com/huggingface/safetensors#format), read through a file
 * handle so only the header and one tensor at a time are ever in memory:
 *
 *   [ u64 LE: N ][ N bytes: JSON header ][ data section: tensors at header data_offsets ]
 *
 * header = { "__metadata__"?: { string: string }, "<name>": { dtype, shape, data_offsets: [b, e] } }
 * Validation follows the reference reader: header length within the file, UTF-8 JSON object, known
 * dtypes, offsets inside the data section, byte length = numel x dtype size, tensors back to back with
 * no overlap or hole, covering the whole data section.
 */

/** Every dtype the format defines, with its size; only SourceDType ones can be loaded. */
const DTYPE_BYTES: Record<string, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
};
const LOADABLE: readonly SourceDType[] = ['F32', 'F16', 'BF16'];

/** The reference implementation refuses headers over 100 MB; so do we, before reading them. */
export const MAX_HEADER_BYTES = 100_000_000;

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error('backbone/checkpoint: safetensors views need a little-endian host');
}

export interface SafetensorsEntry {
  name: string;
  dtype: SourceDType;
  shape: number[];
  /** Absolute byte offsets in the file. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  entries: Map<string, SafetensorsEntry>;
  metadata: Record<string, string>;
}

/** Reads and validates the header of an open safetensors file; `file` names it in errors. */
export async function readHeader(fh: FileHandle, file: string): Promise<SafetensorsHeader> {
  const fileSize = (await fh.stat()).size;
  if (fileSize < 8) fail(file, 'header length', `needs 8 bytes but the file has ${fileSize} (truncated?)`);
  const lenBytes = await readExactly(fh, new Uint8Array(8), 0, file, 'header length');
  const n = new DataView(lenBytes.buffer).getBigUint64(0, true);
  if (n < 2n || n > BigInt(Math.min(MAX_HEADER_BYTES, fileSize - 8))) {
    fail(
      file,
      'header length',
      `${n} is out of range (file is ${fileSize} bytes, limit ${MAX_HEADER_BYTES})`,
    );
  }
  const headerLen = Number(n);
  const headerBytes = await readExactly(fh, new Uint8Array(headerLen), 8, file, 'header');
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (e) {
    fail(file, 'header', `is not UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header))
    fail(file, 'header', 'is not a JSON object');

  const dataStart = 8 + headerLen;
  const dataLen = fileSize - dataStart;
  const metadata: Record<string, string> = {};
  const raw: (SafetensorsEntry & { rel: [number, number] })[] = [];
  for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof value !== 'object' || value === null || Array.isArray(value))
        fail(file, '__metadata__', 'is not an object');
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(file, `__metadata__.${k}`, 'is not a string');
        metadata[k] = v;
      }
      continue;
    }
    const e = parseEntry(name, value, dataLen, file);
    raw.push({ ...e, begin: dataStart + e.rel[0], end: dataStart + e.rel[1] });
  }

  raw.sort((a, b) => a.rel[0] - b.rel[0] || a.rel[1] - b.rel[1]);
  let covered = 0;
  let prev = '';
  for (const e of raw) {
    const [b, end] = e.rel;
    if (b < covered) {
      fail(
        file,
        `tensor '${e.name}'`,
        `data_offsets [${b}, ${end}] overlap tensor '${prev}' (which ends at ${covered})`,
      );
    }
    if (b > covered)
      fail(file, `tensor '${e.name}'`, `data_offsets begin at ${b}, leaving a hole at [${covered}, ${b})`);
    covered = end;
    prev = e.name;
  }
  if (covered !== dataLen) {
    fail(file, 'data section', `is ${dataLen} bytes but its tensors cover ${covered} (trailing bytes)`);
  }
  const entries = new Map<string, SafetensorsEntry>();
  for (const { rel: _, ...e } of raw) entries.set(e.name, e);
  return { entries, metadata };
}

function parseEntry(
  name: string,
  value: unknown,
  dataLen: number,
  file: string,
): { name: string; dtype: SourceDType; shape: number[]; rel: [number, number] } {
  const where = `tensor '${name}'`;
  if (name.length === 0) fail(file, 'tensor name', 'is empty');
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    fail(file, where, 'is not an object');
  const { dtype, shape, data_offsets } = value as Record<string, unknown>;
  if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) {
    fail(file, `${where} dtype`, `${JSON.stringify(dtype)} is not a safetensors dtype`);
  }
  if (!LOADABLE.includes(dtype as SourceDType)) {
    fail(
      file,
      `${where} dtype`,
      `${dtype} is not supported (supported: ${LOADABLE.join(', ')}; quantized checkpoints cannot be loaded)`,
    );
  }
  const isDim = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0;
  if (!Array.isArray(shape) || !shape.every(isDim))
    fail(file, `${where} shape`, `${JSON.stringify(shape)} is not a list of integers >= 0`);
  if (!Array.isArray(data_offsets) || data_offsets.length !== 2 || !data_offsets.every(isDim)) {
    fail(file, `${where} data_offsets`, `${JSON.stringify(data_offsets)} is not [begin, end] integers >= 0`);
  }
  const [b, e] = data_offsets as [number, number];
  if (b > e || e > dataLen) {
    fail(
      file,
      `${where} data_offsets`,
      `[${b}, ${e}] are out of range of the ${dataLen}-byte data section (truncated file?)`,
    );
  }
  const d = dtype as SourceDType;
  const need = (shape as number[]).reduce((a, x) => a * x, 1) * DTYPE_BYTES[d]!;
  if (e - b !== need) {
    fail(
      file,
      `${where} data_offsets`,
      `[${b}, ${e}] span ${e - b} bytes but ${d} [${(shape as number[]).join(', ')}] needs ${need}`,
    );
  }
  return { name, dtype: d, shape: shape as number[], rel: [b, e] };
}

/** Reads bytes [position, position + into.length) fully, failing on a short file. */
export async function readExactly(
  fh: FileHandle,
  into: Uint8Array,
  position: number,
  file: string,
  field: string,
): Promise<Uint8Array> {
  let done = 0;
  while (done < into.byteLength) {
    const { bytesRead } = await fh.read(into, done, into.byteLength - done, position + done);
    if (bytesRead === 0)
      fail(
        file,
        field,
        `ends after ${position + done} bytes, ${into.byteLength - done} short (truncated file?)`,
      );
    done += bytesRead;
  }
  return into;
}

// f16 -> f32 by table: 65536 floats (256 KiB), built once on first use.
let F16_TABLE: Float32Array | undefined;
function f16Table(): Float32Array {
  if (F16_TABLE) return F16_TABLE;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) t[h] = sign * frac * 2 ** -24;
    else if (exp === 31) t[h] = frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
    else t[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  F16_TABLE = t;
  return t;
}

/** Widens `count` 16-bit values to float32 into `out` at `at`. */
export function widen16(dtype: 'F16' | 'BF16', bits: Uint16Array, out: Float32Array, at: number): void {
  if (dtype === 'BF16') {
    // bf16 is the top half of an f32: shift the bits into place.
    const out32 = new Uint32Array(out.buffer, out.byteOffset + at * 4, bits.length);
    for (let i = 0; i < bits.length; i++) out32[i] = bits[i]! << 16;
    return;
  }
  const table = f16Table();
  for (let i = 0; i < bits.length; i++) out[at + i] = table[bits[i]!]!;
}
