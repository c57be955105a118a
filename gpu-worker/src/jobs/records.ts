import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AdapterManifest, JobEvent, JobStatus, StartJobRequest } from '@ladder/schemas';
import { z } from 'zod';

/**
 * What the worker remembers of a job across restarts, one JSON file per job under
 * `{LADDER_DATA_DIR}/jobs/`, each write a temp file renamed into place (a crash leaves the old or
 * the new one, never half of one).
 */
export const JobRecord = z.strictObject({
  request: StartJobRequest,
  status: JobStatus,
  resumed_from_step: z.number().int().min(0),
  step: z.number().int().min(0),
  total_steps: z.number().int().min(0),
  /** Real tokens trained on so far (every epoch counted), as the last progress said. */
  tokens: z.number().int().min(0),
  /** The last optimizer step a progress event was queued for: a resumed run does not report it again. */
  reported_step: z.number().int().min(0),
  /** Events queued for the callback and not yet acknowledged (at-least-once; ids make them idempotent). */
  outbox: z.array(JobEvent),
  started_sent: z.boolean(),
  adapter: AdapterManifest.nullable(),
  billed_training_tokens: z.number().int().min(0).nullable(),
  error: z.string().nullable(),
  updated_at: z.iso.datetime(),
});
export type JobRecord = z.infer<typeof JobRecord>;

export class JobRecordStore {
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  private path(jobId: string): string {
    return join(this.dir, `${jobId}.json`);
  }

  get(jobId: string): JobRecord | undefined {
    let text: string;
    try {
      text = readFileSync(this.path(jobId), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
    const parsed = JobRecord.safeParse(JSON.parse(text));
    if (!parsed.success) throw new Error(`${this.path(jobId)}: ${z.prettifyError(parsed.error)}`);
    return parsed.data;
  }

  put(record: JobRecord): JobRecord {
    const next = { ...record, updated_at: new Date().toISOString() };
    const tmp = `${this.path(record.request.job_id)}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(next));
    renameSync(tmp, this.path(record.request.job_id));
    return next;
  }

  all(): JobRecord[] {
    return readdirSync(this.dir)
      .filter((f) => f.endsWith('.json'))
      .map((f) => this.get(f.slice(0, -'.json'.length)))
      .filter((r): r is JobRecord => r !== undefined);
  }
}
