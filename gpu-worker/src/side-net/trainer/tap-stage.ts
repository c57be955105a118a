import {
  closeSync,
  ftruncateSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { f16, f32, type Tensor } from '../../runtime/index.ts';

/**
 * Backbone outputs of the next few micro-batches, parked on local disk between the pass that
 * computed them and the side steps that read them (the trainer's phased schedule, TapSchedule).
 * Tensors are kept bit for bit, in their own dtype: a staged batch trains exactly as one fed
 * straight from the pass.
 *
 *   taps.bin   every staged tensor's bytes, back to back; emptied when the stage is cleared
 *
 * Each entry is read once (`take`); the file lives in its own temporary folder, removed on close.
 */
export class TapStage {
  private readonly dir: string;
  private fd: number | undefined;
  private end = 0;
  private readonly entries = new Map<string, StagedTensor[]>();

  constructor(parent: string) {
    mkdirSync(parent, { recursive: true });
    this.dir = mkdtempSync(join(parent, 'ladder-taps-'));
    this.fd = openSync(join(this.dir, 'taps.bin'), 'w+');
  }

  /** Batches staged and not yet taken. */
  get size(): number {
    return this.entries.size;
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** Park one batch's tensors under `key`. */
  put(key: string, tensors: Readonly<Record<string, Tensor>>): void {
    const fd = this.open();
    if (this.entries.has(key)) throw new Error(`TapStage.put: '${key}' is already staged`);
    for (const [name, t] of Object.entries(tensors))
      if (t.type !== 'float32' && t.type !== 'float16')
        throw new Error(`TapStage.put: ${name} is ${t.type}; the stage holds float32 and float16 tensors`);
    const staged: StagedTensor[] = [];
    for (const [name, t] of Object.entries(tensors)) {
      const data = t.data as Float32Array | Uint16Array;
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      for (let at = 0; at < bytes.byteLength; )
        at += writeSync(fd, bytes, at, bytes.byteLength - at, this.end + at);
      staged.push({
        name,
        type: t.type as StagedTensor['type'],
        dims: [...t.dims],
        offset: this.end,
        bytes: bytes.byteLength,
      });
      this.end += bytes.byteLength;
    }
    this.entries.set(key, staged);
  }

  /** The tensors staged under `key`, read back and forgotten. */
  take(key: string): Record<string, Tensor> {
    const fd = this.open();
    const staged = this.entries.get(key);
    if (!staged) throw new Error(`TapStage.take: '${key}' is not staged`);
    const out: Record<string, Tensor> = {};
    for (const s of staged) {
      const bytes = new Uint8Array(s.bytes);
      let at = 0;
      while (at < s.bytes) {
        const got = readSync(fd, bytes, at, s.bytes - at, s.offset + at);
        if (got === 0) throw new Error(`TapStage.take: ${s.name} of '${key}' is truncated on disk`);
        at += got;
      }
      out[s.name] =
        s.type === 'float16'
          ? f16(new Uint16Array(bytes.buffer), s.dims, s.name)
          : f32(new Float32Array(bytes.buffer), s.dims, s.name);
    }
    this.entries.delete(key);
    return out;
  }

  /** Forget every entry and give the disk back. */
  clear(): void {
    this.entries.clear();
    if (this.fd !== undefined) ftruncateSync(this.fd, 0);
    this.end = 0;
  }

  /** Delete the file and its folder. Idempotent. */
  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    this.entries.clear();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private open(): number {
    if (this.fd === undefined) throw new Error('TapStage: the stage is closed');
    return this.fd;
  }
}

interface StagedTensor {
  name: string;
  type: 'float32' | 'float16';
  dims: number[];
  offset: number;
  bytes: number;
}
