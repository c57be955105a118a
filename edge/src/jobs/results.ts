import { type StepMetrics, sha256Hex } from '@ladder/schemas';
import { unixSeconds } from '../lib/ids.ts';
import { fileKey, storeFile } from '../store/files.ts';
import { type JobRow, stepMetrics } from '../store/jobs.ts';

/**
 * The columns of OpenAI's fine-tuning result file, in its order (`train_accuracy` is the mean
 * token accuracy of the step's batch), then the full validation set's figures, which only the
 * last step has. An empty cell is a figure the step did not measure.
 */
const COLUMNS: [string, keyof StepMetrics][] = [
  ['step', 'step'],
  ['train_loss', 'train_loss'],
  ['train_accuracy', 'train_mean_token_accuracy'],
  ['valid_loss', 'valid_loss'],
  ['valid_mean_token_accuracy', 'valid_mean_token_accuracy'],
  ['full_valid_loss', 'full_valid_loss'],
  ['full_valid_mean_token_accuracy', 'full_valid_mean_token_accuracy'],
];

export function resultsCsv(rows: StepMetrics[]): string {
  const cell = (v: number | null | undefined) => (v === null || v === undefined ? '' : String(v));
  const lines = rows.map((r) => COLUMNS.map(([, key]) => cell(r[key])).join(','));
  return `${[COLUMNS.map(([name]) => name).join(','), ...lines].join('\n')}\n`;
}

/** One results file per job: its id follows from the job's, so writing it twice writes it once. */
export const resultsFileId = (jobId: string) => `file-${jobId}-results`;

/**
 * Writes the job's step metrics as its result file (R2, then the files row) and returns the id.
 * Called when the job succeeds, from the metrics events stored by then and the final event's own
 * metrics (the full validation set's figures), which complete its step's row.
 */
export async function writeResultsFile(
  env: Env,
  job: JobRow,
  final: StepMetrics | undefined,
  now = Date.now(),
): Promise<string> {
  const rows = await stepMetrics(env, job.tenant_id, job.id);
  if (final) {
    const i = rows.findIndex((r) => r.step === final.step);
    if (i >= 0) rows[i] = { ...rows[i]!, ...final };
    else rows.push(final);
  }
  const csv = new TextEncoder().encode(resultsCsv(rows));
  const id = resultsFileId(job.id);
  await storeFile(env, {
    row: {
      id,
      tenant_id: job.tenant_id,
      filename: 'step_metrics.csv',
      purpose: 'fine-tune-results',
      bytes: csv.byteLength,
      format: null,
      line_count: csv.filter((b) => b === 10).length,
      sha256: await sha256Hex(csv),
      r2_key: fileKey(job.tenant_id, id, 'csv'),
      created_at: unixSeconds(now),
    },
    bytes: csv,
    contentType: 'text/csv',
  });
  return id;
}
