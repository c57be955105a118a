import { access, type FileHandle, open, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { z } from 'zod';
import type { TensorInfo, TensorSource } from '../types.ts';
import { CheckpointError, fail } from './errors.ts';
import { readExactly, readHeader, type SafetensorsEntry, widen16 } from './safetensors.ts';

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';

/** A TensorSource over safetensors files, with what the loader knows beyond the contract. */
export interface CheckpointSource extends TensorSource {
  /** The file that lists the tensors (model.safetensors or the index), for error messages. */
  readonly origin: string;
  /** Rows [start, start + count) of the leading axis, as float32 (e.g. a slice of a large embedding). */
  readRows(name: string, start: number, count: number): Promise<Float32Array>;
}

export interface OpenOptions {
  /**
   * Largest read (bytes) per file call; 16-bit tensors are widened chunk by chunk, so memory is the
   * float32 result plus one chunk. Small values are only useful to test chunk boundaries.
   */
  chunkBytes?: number;
}
const DEFAULTS: Required<OpenOptions> = { chunkBytes: 64 << 20 };

const IndexJson = z.object({
  metadata: z.record(z.string(), z.unknown()).nullish(),
  weight_map: z.record(z.string(), z.string()),
});

/**
 * The weight files of an HF directory: `model.safetensors` if present (as transformers prefers it),
 * else the shards named by `model.safetensors.index.json`. Shard names must stay inside `dir`.
 */
export async function findWeightFiles(
  dir: string,
): Promise<{ origin: string; files: string[]; weightMap?: Map<string, string> }> {
  const single = join(dir, SINGLE_FILE);
  if (await exists(single)) return { origin: single, files: [single] };
  const indexFile = join(dir, INDEX_FILE);
  if (!(await exists(indexFile))) {
    const pickle = (await exists(join(dir, 'pytorch_model.bin')))
      ? ' (pytorch_model.bin is not supported: convert to safetensors)'
      : '';
    fail(dir, SINGLE_FILE, `is missing, and so is ${INDEX_FILE}${pickle}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(await readFile(indexFile, 'utf8'));
  } catch (e) {
    fail(indexFile, 'content', `is not valid JSON (${(e as Error).message})`);
  }
  const parsed = IndexJson.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    fail(indexFile, issue.path.map(String).join('.') || 'content', `is invalid (${issue.message})`);
  }
  const weightMap = new Map<string, string>();
  for (const [tensor, shard] of Object.entries(parsed.data.weight_map)) {
    if (shard !== basename(shard) || shard === '..' || shard === '.' || shard.length === 0) {
      fail(
        indexFile,
        `weight_map['${tensor}']`,
        `'${shard}' must be a file name inside the checkpoint directory`,
      );
    }
    weightMap.set(tensor, join(dir, shard));
  }
  if (weightMap.size === 0) fail(indexFile, 'weight_map', 'is empty');
  const files = [...new Set(weightMap.values())].sort();
  for (const f of files) {
    if (!(await exists(f))) fail(indexFile, 'weight_map', `names '${basename(f)}', which is missing`);
  }
  return { origin: indexFile, files, weightMap };
}

/** Opens a checkpoint's weights: headers are read and validated now, tensors on demand. */
export async function openCheckpoint(dir: string, options: OpenOptions = {}): Promise<CheckpointSource> {
  const opts = { ...DEFAULTS, ...options } satisfies Required<OpenOptions>;
  const { origin, files, weightMap } = await findWeightFiles(dir);
  const handles = new Map<string, FileHandle>();
  try {
    const tensors = new Map<string, TensorInfo>();
    const entries = new Map<string, SafetensorsEntry>();
    for (const file of files) {
      const fh = await open(file, 'r');
      handles.set(file, fh);
      const header = await readHeader(fh, file);
      for (const [name, e] of header.entries) {
        // A sharded checkpoint lists each tensor under one shard; copies elsewhere are ignored, as HF does.
        if (weightMap && weightMap.get(name) !== file) continue;
        entries.set(name, e);
        tensors.set(name, { name, dtype: e.dtype, shape: e.shape, file });
      }
    }
    if (weightMap) {
      const missing = [...weightMap].filter(([name]) => !entries.has(name));
      if (missing.length) {
        throw new CheckpointError(
          missing.map(([name, file]) => ({
            file,
            field: `tensor '${name}'`,
            detail: `is listed in ${INDEX_FILE} but not in this file`,
          })),
        );
      }
    }
    return new SafetensorsSource(origin, tensors, entries, handles, opts.chunkBytes);
  } catch (e) {
    await Promise.all([...handles.values()].map((h) => h.close()));
    throw e;
  }
}

class SafetensorsSource implements CheckpointSource {
  private closed = false;

  constructor(
    readonly origin: string,
    readonly tensors: ReadonlyMap<string, TensorInfo>,
    private readonly entries: ReadonlyMap<string, SafetensorsEntry>,
    private readonly handles: ReadonlyMap<string, FileHandle>,
    private readonly chunkBytes: number,
  ) {}

  async read(name: string): Promise<Float32Array> {
    const info = this.info(name);
    return this.readRows(name, 0, info.shape[0] ?? 1);
  }

  async readRows(name: string, start: number, count: number): Promise<Float32Array> {
    const info = this.info(name);
    const e = this.entries.get(name)!;
    const rows = info.shape.length === 0 ? 1 : info.shape[0]!;
    if (
      !Number.isInteger(start) ||
      !Number.isInteger(count) ||
      start < 0 ||
      count < 0 ||
      start + count > rows
    ) {
      throw new RangeError(
        `${info.file}: tensor '${name}' rows [${start}, ${start + count}) are outside [0, ${rows})`,
      );
    }
    const rowElems = info.shape.slice(1).reduce((a, x) => a * x, 1);
    const elemBytes = e.dtype === 'F32' ? 4 : 2;
    const out = new Float32Array(count * rowElems);
    const fh = this.handles.get(info.file)!;
    const position = e.begin + start * rowElems * elemBytes;
    const field = `tensor '${name}'`;
    // Whole elements per chunk, and an even count so 16-bit views stay aligned.
    const chunkElems = Math.max(2, Math.floor(this.chunkBytes / elemBytes) & ~1);
    if (e.dtype === 'F32') {
      const bytes = new Uint8Array(out.buffer);
      for (let at = 0; at < bytes.byteLength; at += chunkElems * 4) {
        const len = Math.min(chunkElems * 4, bytes.byteLength - at);
        await readExactly(fh, bytes.subarray(at, at + len), position + at, info.file, field);
      }
      return out;
    }
    const scratch = new Uint16Array(Math.min(chunkElems, out.length));
    const scratchBytes = new Uint8Array(scratch.buffer);
    for (let at = 0; at < out.length; at += chunkElems) {
      const len = Math.min(chunkElems, out.length - at);
      await readExactly(fh, scratchBytes.subarray(0, len * 2), position + at * 2, info.file, field);
      widen16(e.dtype, scratch.subarray(0, len), out, at);
    }
    return out;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.handles.values()].map((h) => h.close()));
  }

  private info(name: string): TensorInfo {
    if (this.closed) throw new Error(`${this.origin}: the checkpoint is closed`);
    const info = this.tensors.get(name);
    if (!info)
      throw new CheckpointError([
        { file: this.origin, field: `tensor '${name}'`, detail: 'is not in the checkpoint' },
      ]);
    return info;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
