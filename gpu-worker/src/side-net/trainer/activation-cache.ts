import {
  closeSync,
  existsSync,
  fstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { f16, f32, type Tensor } from '../../runtime/index.ts';
import { decodeHalf, encodeHalf } from '../../util/half.ts';
import type { Batch } from '../data/index.ts';

/**
 * Backbone activations of the training set on disk as fp16, so epochs after the first skip the
 * backbone (DESIGN.md section 1, consequence 5: the backbone is frozen, its outputs for a given
 * example never change).
 *
 * Each example is stored unpadded: with right padding a causal model's real positions do not
 * depend on the padding after them, so one example's rows can be cut out of any batch and put
 * back into any other (padding rows come back as zeros; nothing reads them: they are masked as
 * keys and carry no label).
 *
 *   activations.f16   per example, back to back: for each name (tap.t..., final_hidden) (T_i, d) halves
 *   index.json        written last (`sealed`): key, shapes, the offset of every example
 */

export interface ActivationCacheOptions {
  /** A folder for this run's cache (created; removed when training completes). */
  dir: string;
  /** Cache only when every training example fits in this many bytes. */
  maxBytes: number;
}

export interface ActivationCacheReport {
  /** A cache was configured. */
  enabled: boolean;
  /** Later epochs read the backbone's activations from it. */
  used: boolean;
  /** What the whole training set takes as fp16. */
  bytes: number;
  maxBytes: number;
  /** Why it was not used, when it was not. */
  reason: string | null;
}

const DATA_FILE = 'activations.f16';
const INDEX_FILE = 'index.json';

const Index = z.strictObject({
  format: z.literal(1),
  key: z.string(),
  d: z.number().int().positive(),
  names: z.array(z.string()),
  lengths: z.array(z.number().int().positive()),
  offsets: z.array(z.number().int().nonnegative()),
  sealed: z.literal(true),
});

/** Bytes the cache needs for examples of these lengths. */
export function activationBytes(lengths: readonly number[], d: number, names: number): number {
  return lengths.reduce((sum, T) => sum + T * d * names * 2, 0);
}

export class ActivationCache {
  private readonly offsets: number[];
  private fd: number | undefined;
  private end = 0;
  private sealed: boolean;

  private constructor(
    private readonly dir: string,
    private readonly key: string,
    /** Output names stored per example, in order (the side net's inputs). */
    readonly names: readonly string[],
    private readonly d: number,
    private readonly lengths: readonly number[],
    /** Names read back as float16 tensors (as the backbone pass gives them), not float32. */
    private readonly half: ReadonlySet<string>,
    reused: z.infer<typeof Index> | undefined,
  ) {
    this.offsets = reused ? [...reused.offsets] : new Array<number>(lengths.length).fill(-1);
    this.sealed = reused !== undefined;
    this.fd = openSync(join(dir, DATA_FILE), reused ? 'r' : 'w+');
    this.end = reused ? fstatSync(this.fd).size : 0;
  }

  /**
   * The cache in `dir`: reused when a sealed one with the same key (backbone build, taps, examples
   * and batch plan) is there and its data file has the expected size; otherwise started afresh.
   * `half`: the names `read` gives as float16 (the rest as float32).
   */
  static open(
    dir: string,
    key: string,
    names: readonly string[],
    d: number,
    lengths: readonly number[],
    half: readonly string[] = [],
  ) {
    mkdirSync(dir, { recursive: true });
    const index = readIndex(dir);
    const want = activationBytes(lengths, d, names.length);
    const dataPath = join(dir, DATA_FILE);
    const reusable =
      index?.key === key &&
      index.d === d &&
      index.names.join('\n') === names.join('\n') &&
      index.lengths.join(',') === lengths.join(',') &&
      existsSync(dataPath) &&
      statSync(dataPath).size === want;
    if (!reusable) {
      rmSync(join(dir, INDEX_FILE), { force: true });
      rmSync(dataPath, { force: true });
    }
    return new ActivationCache(dir, key, names, d, lengths, new Set(half), reusable ? index : undefined);
  }

  /** Every example is stored and the index written. */
  get complete(): boolean {
    return this.sealed;
  }

  has(example: number): boolean {
    return this.offsets[example]! >= 0;
  }

  /**
   * Store the unpadded rows of every example of `batch` not stored yet, from the backbone's
   * (B, T_padded, d) outputs, float32 or float16 (kept bit for bit). Returns a problem (a float32
   * value past fp16's range) instead of storing it.
   */
  capture(batch: Batch, outputs: Readonly<Record<string, Tensor>>): string | undefined {
    if (this.sealed) throw new Error('ActivationCache.capture: the cache is sealed');
    const { d } = this;
    for (const [b, example] of batch.indices.entries()) {
      if (this.has(example)) continue;
      const T = this.lengths[example]!;
      const block = new Uint16Array(this.names.length * T * d);
      for (const [n, name] of this.names.entries()) {
        const t = outputs[name];
        if (!t) throw new Error(`ActivationCache.capture: the backbone gave no '${name}'`);
        const [from, to] = [b * batch.length * d, (b * batch.length + T) * d];
        const into = block.subarray(n * T * d, (n + 1) * T * d);
        if (t.type === 'float16') {
          into.set((t.data as Uint16Array).subarray(from, to));
          continue;
        }
        const rows = (t.data as Float32Array).subarray(from, to);
        const bad = encodeHalf(rows, into);
        if (bad >= 0) {
          const value = rows[bad]!;
          return `${name} of training example ${example} holds ${value}, past fp16's range (65504)`;
        }
      }
      writeSync(this.fd!, new Uint8Array(block.buffer), 0, block.byteLength, this.end);
      this.offsets[example] = this.end;
      this.end += block.byteLength;
    }
    return undefined;
  }

  /** Write the index once every example is stored; from then on the cache only reads. */
  seal(): void {
    const missing = this.offsets.findIndex((o) => o < 0);
    if (missing >= 0) throw new Error(`ActivationCache.seal: example ${missing} is not stored`);
    const index: z.infer<typeof Index> = {
      format: 1,
      key: this.key,
      d: this.d,
      names: [...this.names],
      lengths: [...this.lengths],
      offsets: this.offsets,
      sealed: true,
    };
    writeFileSync(join(this.dir, INDEX_FILE), JSON.stringify(index));
    this.sealed = true;
  }

  /** The batch's side-net inputs (B, T_padded, d), float16 or float32 (`half`), padding rows zero. */
  read(batch: Batch): Record<string, Tensor> {
    if (!this.sealed) throw new Error('ActivationCache.read: the cache is not complete');
    const { d } = this;
    const B = batch.size;
    const Tp = batch.length;
    const out = this.names.map((name) =>
      this.half.has(name) ? new Uint16Array(B * Tp * d) : new Float32Array(B * Tp * d),
    );
    for (const [b, example] of batch.indices.entries()) {
      const T = this.lengths[example]!;
      const block = new Uint16Array(this.names.length * T * d);
      const got = readSync(
        this.fd!,
        new Uint8Array(block.buffer),
        0,
        block.byteLength,
        this.offsets[example]!,
      );
      if (got !== block.byteLength) throw new Error(`ActivationCache.read: example ${example} is truncated`);
      for (const [n, into] of out.entries()) {
        const stored = block.subarray(n * T * d, (n + 1) * T * d);
        const rows = into.subarray(b * Tp * d, (b * Tp + T) * d);
        if (rows instanceof Uint16Array) rows.set(stored);
        else decodeHalf(stored, rows);
      }
    }
    return Object.fromEntries(
      this.names.map((name, n) => {
        const data = out[n]!;
        return [
          name,
          data instanceof Uint16Array ? f16(data, [B, Tp, d], name) : f32(data, [B, Tp, d], name),
        ];
      }),
    );
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  /** Close and delete the files. */
  remove(): void {
    this.close();
    rmSync(join(this.dir, INDEX_FILE), { force: true });
    rmSync(join(this.dir, DATA_FILE), { force: true });
  }
}

function readIndex(dir: string): z.infer<typeof Index> | undefined {
  try {
    const parsed = Index.safeParse(JSON.parse(readFileSync(join(dir, INDEX_FILE), 'utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined; // none, or unreadable: start afresh
  }
}
