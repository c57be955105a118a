import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { AdapterManifest, JobEvent, JobStatus, StartJobRequest } from '@ladder/schemas';
import { z } from 'zod';

/**
 * What the worker remembers of a job across restarts, one JSON file per job under
 * `{LADDER_DATA_DIR}/jobs/`. Each write goes to a temp file that is fsynced, renamed into place,
 * and the directory fsynced, so a crash or power cut leaves the old record or the new one, never
 * half of one. A record that is corrupt all the same (a disk fault, a hand edit) is moved aside
 * into `jobs/quarantine/` and never keeps the worker from starting.
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
  /** A finished job's training copies, activation cache and checkpoints are deleted (jobs/purge.ts). */
  data_purged: z.boolean().optional(),
  updated_at: z.iso.datetime(),
});
export type JobRecord = z.infer<typeof JobRecord>;

/** Why a record file could not be read as a JobRecord. */
export class CorruptRecordError extends Error {
  override name = 'CorruptRecordError';
}

/** A record moved aside: where it went and, if its request survived, the request. */
export interface QuarantinedRecord {
  jobId: string;
  movedTo: string;
  reason: string;
  request: StartJobRequest | undefined;
}

const QUARANTINE = 'quarantine';

/** A fresh record for a job whose record was lost but whose request survived: it resumes from its checkpoint. */
export function recoveredRecord(request: StartJobRequest): JobRecord {
  return {
    request,
    status: 'queued',
    resumed_from_step: 0,
    step: 0,
    total_steps: 0,
    tokens: 0,
    reported_step: 0,
    outbox: [],
    started_sent: false,
    adapter: null,
    billed_training_tokens: null,
    error: null,
    updated_at: new Date().toISOString(),
  };
}

export class JobRecordStore {
  /** Records moved aside by `all()` since this store opened. */
  readonly quarantined: QuarantinedRecord[] = [];

  constructor(
    readonly dir: string,
    private readonly log: (line: string) => void = (l) => console.error(l),
  ) {
    mkdirSync(dir, { recursive: true });
  }

  private path(jobId: string): string {
    return join(this.dir, `${jobId}.json`);
  }

  /** The record, undefined if there is none, a CorruptRecordError if it does not parse. */
  get(jobId: string): JobRecord | undefined {
    let text: string;
    try {
      text = readFileSync(this.path(jobId), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new CorruptRecordError(`${this.path(jobId)}: not JSON (${(e as Error).message})`);
    }
    const parsed = JobRecord.safeParse(json);
    if (!parsed.success)
      throw new CorruptRecordError(`${this.path(jobId)}: ${z.prettifyError(parsed.error)}`);
    return parsed.data;
  }

  put(record: JobRecord): JobRecord {
    const next = { ...record, updated_at: new Date().toISOString() };
    const target = this.path(record.request.job_id);
    const tmp = `${target}.${process.pid}.tmp`;
    const fd = openSync(tmp, 'w');
    try {
      writeSync(fd, JSON.stringify(next));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, target);
    syncDir(this.dir);
    return next;
  }

  /**
   * Every readable record. A corrupt one is moved into `quarantine/` and logged; if its request
   * still parses, a fresh queued record takes its place, so the job resumes from its latest
   * intact checkpoint (the edge's dedup by event id absorbs what it reports again). Without its
   * request the job is the edge's to re-dispatch when its lease expires; this worker then resumes
   * it from the checkpoint, as for any job it does not know.
   */
  all(): JobRecord[] {
    const out: JobRecord[] = [];
    for (const f of readdirSync(this.dir)) {
      if (!f.endsWith('.json')) continue;
      const jobId = f.slice(0, -'.json'.length);
      try {
        const r = this.get(jobId);
        if (r) out.push(r);
      } catch (e) {
        if (!(e instanceof CorruptRecordError)) throw e;
        const q = this.quarantine(jobId, e.message);
        if (q.request) out.push(this.put(recoveredRecord(q.request)));
      }
    }
    return out;
  }

  private quarantine(jobId: string, reason: string): QuarantinedRecord {
    let request: StartJobRequest | undefined;
    try {
      const json = JSON.parse(readFileSync(this.path(jobId), 'utf8')) as { request?: unknown };
      const parsed = StartJobRequest.safeParse(json?.request);
      if (parsed.success && parsed.data.job_id === jobId) request = parsed.data;
    } catch {
      // torn: nothing to salvage
    }
    const qdir = join(this.dir, QUARANTINE);
    mkdirSync(qdir, { recursive: true });
    const movedTo = join(qdir, `${jobId}.${Date.now()}.json`);
    renameSync(this.path(jobId), movedTo);
    syncDir(this.dir);
    this.log(
      `gpu-worker: job record ${jobId} is corrupt and was moved to ${movedTo} (${reason.split('\n')[0]}); ` +
        (request
          ? 'its request survived: the job resumes from its latest checkpoint'
          : 'the edge re-dispatches the job when its lease expires, and it resumes from its checkpoint'),
    );
    const q = { jobId, movedTo, reason, request };
    this.quarantined.push(q);
    return q;
  }
}

function syncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
