import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CheckpointStore } from '@ladder/adapters';
import { z } from 'zod';

/** One saved checkpoint as a sink hands it back. */
export interface SavedCheckpoint {
  step: number;
  data: Uint8Array;
}

/**
 * Where a trainer puts its checkpoints and finds the newest one again. The bytes are opaque to the
 * sink (checkpoint.ts writes them); a sink only has to make `loadLatest` return the last `save`
 * that completed, whole, or nothing.
 */
export interface CheckpointSink {
  save(step: number, data: Uint8Array, metadata: Record<string, string>): Promise<void>;
  loadLatest(): Promise<SavedCheckpoint | undefined>;
}

/** Checkpoints of one job in an AdapterStore (its CheckpointStore: verified, latest pointer, pruned). */
export function checkpointStoreSink(store: { checkpoints: CheckpointStore }, jobId: string): CheckpointSink {
  return {
    async save(step, data, metadata) {
      await store.checkpoints.put(jobId, { step, data, metadata });
    },
    async loadLatest() {
      const latest = await store.checkpoints.latest(jobId);
      return latest && { step: latest.record.step, data: latest.data };
    },
  };
}

const Latest = z.strictObject({
  step: z.number().int().nonnegative(),
  file: z.string().regex(/^step-\d{12}\.ckpt$/),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  size: z.number().int().nonnegative(),
  metadata: z.record(z.string(), z.string()),
});

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

/**
 * Checkpoints in a local folder: `step-<n>.ckpt` then `latest.json` naming it with its sha256, each
 * written to a temporary name and renamed into place, so a crash mid-save leaves the previous
 * checkpoint the latest. The newest `keep` files stay.
 */
export function directorySink(dir: string, opts: { keep?: number } = {}): CheckpointSink {
  const keep = opts.keep ?? 2;
  if (!Number.isInteger(keep) || keep < 1) throw new RangeError(`directorySink: keep ${keep} must be >= 1`);
  const fileOf = (step: number) => `step-${String(step).padStart(12, '0')}.ckpt`;
  const atomicWrite = async (name: string, data: Uint8Array | string) => {
    const tmp = join(dir, `.${name}.${process.pid}.tmp`);
    await writeFile(tmp, data);
    await rename(tmp, join(dir, name));
  };
  return {
    async save(step, data, metadata) {
      await mkdir(dir, { recursive: true });
      const file = fileOf(step);
      await atomicWrite(file, data);
      const latest = { step, file, sha256: sha256(data), size: data.byteLength, metadata };
      await atomicWrite('latest.json', JSON.stringify(latest));
      const old = (await readdir(dir)).filter((f) => /^step-\d{12}\.ckpt$/.test(f) && f !== file).sort();
      for (const f of old.slice(0, Math.max(0, old.length + 1 - keep)))
        await rm(join(dir, f), { force: true });
    },
    async loadLatest() {
      let text: string;
      try {
        text = await readFile(join(dir, 'latest.json'), 'utf8');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw e;
      }
      const parsed = Latest.safeParse(JSON.parse(text));
      if (!parsed.success) throw new Error(`${dir}/latest.json: ${z.prettifyError(parsed.error)}`);
      const { step, file, size } = parsed.data;
      const data = new Uint8Array(await readFile(join(dir, file)));
      if (data.byteLength !== size || sha256(data) !== parsed.data.sha256) {
        throw new Error(
          `${dir}/${file}: ${data.byteLength} bytes do not match latest.json (size ${size}, sha256)`,
        );
      }
      return { step, data };
    },
  };
}
