import { ADAPTER_FORMAT_VERSION, CheckpointRecord, describeIssues } from '@ladder/schemas';
import { type BlobStore, listAll } from './blob.ts';
import { IntegrityError, InvalidArgumentError, NotFoundError } from './errors.ts';
import { sha256Hex } from './hash.ts';
import { checkId, checkpointPrefix, checkpointStem, parseCheckpointRecordKey } from './keys.ts';
import { readJson } from './read-json.ts';

export interface Checkpoint {
  record: CheckpointRecord;
  /** The checkpoint's bytes (trainer-defined, e.g. safetensors of params + optimizer state). */
  data: Uint8Array;
}

/**
 * Training checkpoints of one tenant. Unlike adapter versions they are mutable (a resumed job
 * may rewrite a step) and the newest is found through `latest.json`. Each write goes data,
 * then its record, then the pointer, so the pointer never names bytes that are not there, and
 * every read checks the bytes against the record's sha256.
 */
export class CheckpointStore {
  constructor(
    private readonly blobs: BlobStore,
    private readonly tenant: string,
    private readonly keep: number,
  ) {}

  async put(
    jobId: string,
    input: { step: number; data: Uint8Array; metadata?: Record<string, string>; createdAt?: Date },
  ): Promise<CheckpointRecord> {
    const stem = checkpointStem(this.tenant, jobId, input.step);
    const parsed = CheckpointRecord.safeParse({
      format_version: ADAPTER_FORMAT_VERSION,
      tenant: this.tenant,
      job_id: jobId,
      step: input.step,
      sha256: sha256Hex(input.data),
      size_bytes: input.data.byteLength,
      created_at: (input.createdAt ?? new Date()).toISOString(),
      metadata: input.metadata ?? {},
    });
    if (!parsed.success)
      throw new InvalidArgumentError(
        `checkpoint ${jobId} step ${input.step}: ${describeIssues(parsed.error)}`,
      );
    const record = parsed.data;
    const json = new TextEncoder().encode(JSON.stringify(record));
    await this.blobs.put(`${stem}.bin`, input.data);
    await this.blobs.put(`${stem}.json`, json);
    await this.blobs.put(`${checkpointPrefix(this.tenant, jobId)}latest.json`, json);
    await this.prune(jobId, record.step);
    return record;
  }

  /** The checkpoint `latest.json` points at, verified; undefined if the job has none. */
  async latest(jobId: string): Promise<Checkpoint | undefined> {
    const key = `${checkpointPrefix(this.tenant, jobId)}latest.json`;
    const record = await readJson(this.blobs, key, CheckpointRecord);
    return record && this.load(key, record, jobId);
  }

  async get(jobId: string, step: number): Promise<Checkpoint> {
    const key = `${checkpointStem(this.tenant, jobId, step)}.json`;
    const record = await readJson(this.blobs, key, CheckpointRecord);
    if (!record)
      throw new NotFoundError(`checkpoint ${jobId} step ${step} not found for tenant ${this.tenant}`);
    return this.load(key, record, jobId);
  }

  /** Steps with a record, ascending (keys are zero-padded, so key order is step order). */
  async steps(jobId: string): Promise<number[]> {
    const prefix = checkpointPrefix(this.tenant, jobId);
    const steps: number[] = [];
    for await (const k of listAll(this.blobs, prefix)) {
      const s = parseCheckpointRecordKey(k.slice(prefix.length));
      if (s !== undefined) steps.push(s);
    }
    return steps;
  }

  /** Removes every checkpoint of a job, pointer first so no reader follows it into a hole. */
  async delete(jobId: string): Promise<void> {
    const prefix = checkpointPrefix(this.tenant, jobId);
    await this.blobs.delete(`${prefix}latest.json`);
    for await (const k of listAll(this.blobs, prefix)) await this.blobs.delete(k);
  }

  private async load(key: string, record: CheckpointRecord, jobId: string): Promise<Checkpoint> {
    if (record.tenant !== this.tenant || record.job_id !== checkId('job id', jobId)) {
      throw new IntegrityError(`${key}: record names tenant ${record.tenant} job ${record.job_id}`);
    }
    const dataKey = `${checkpointStem(this.tenant, jobId, record.step)}.bin`;
    const data = await this.blobs.get(dataKey);
    if (!data) throw new IntegrityError(`${key} names step ${record.step} but ${dataKey} is missing`);
    const sha = sha256Hex(data);
    if (data.byteLength !== record.size_bytes || sha !== record.sha256) {
      throw new IntegrityError(
        `${dataKey}: ${data.byteLength} bytes with sha256 ${sha} do not match the record (${record.size_bytes}, ${record.sha256})`,
      );
    }
    return { record, data };
  }

  /** Keeps the newest `keep` steps (and always the one just written). */
  private async prune(jobId: string, current: number): Promise<void> {
    const steps = await this.steps(jobId);
    const doomed = steps.filter((s) => s !== current).slice(0, Math.max(0, steps.length - this.keep));
    for (const s of doomed) {
      const stem = checkpointStem(this.tenant, jobId, s);
      await this.blobs.delete(`${stem}.json`);
      await this.blobs.delete(`${stem}.bin`);
    }
  }
}
