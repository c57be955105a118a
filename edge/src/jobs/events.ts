import type { JobEvent } from '@ladder/schemas';
import { meter } from '../durable-objects/tenant-meter.ts';
import { registry } from '../durable-objects/worker-registry.ts';
import { ApiException } from '../lib/errors.ts';
import { unixSeconds } from '../lib/ids.ts';
import { adapterModelId, registerAdapter } from '../store/adapters.ts';
import { addEvent, type JobRow, TERMINAL } from '../store/jobs.ts';

/**
 * Applies a worker's signed progress/final event to its job. Every effect is idempotent (guarded
 * updates, INSERT OR IGNORE, the meter's dedup by id), and the event row is written last, so a
 * callback that failed half-way is completed by the worker's retry and a duplicate changes nothing.
 */
export async function applyJobEvent(
  env: Env,
  job: JobRow,
  e: JobEvent,
  now = Date.now(),
): Promise<{ duplicate: boolean; job_status: JobRow['status'] }> {
  const seen = await env.DB.prepare('SELECT 1 FROM job_events WHERE id = ?').bind(e.event_id).first();
  if (seen) return { duplicate: true, job_status: job.status };
  let status = job.status;
  if (!TERMINAL.has(job.status)) {
    const reg = registry(env);
    switch (e.type) {
      case 'started':
      case 'progress':
        await reg.renew(job.id, now);
        break;
      case 'checkpoint':
        await reg.renew(job.id, now);
        await env.DB.prepare(
          'INSERT OR IGNORE INTO checkpoints (id, job_id, tenant_id, step, metrics, created_at) VALUES (?, ?, ?, ?, ?, ?)',
        )
          .bind(
            `ftckpt-${e.event_id}`,
            job.id,
            job.tenant_id,
            e.step,
            JSON.stringify({ step: e.step, train_loss: e.loss, valid_loss: e.eval_loss, epoch: e.epoch }),
            unixSeconds(Date.parse(e.created_at)),
          )
          .run();
        break;
      case 'succeeded':
        status = await succeed(env, job, e, now);
        await reg.release(job.id);
        break;
      case 'failed':
      case 'cancelled':
        await env.DB.prepare(
          `UPDATE jobs SET status = ?, error = ?, finished_at = ? WHERE id = ? AND status IN ('queued', 'running')`,
        )
          .bind(
            e.type,
            e.type === 'failed'
              ? JSON.stringify({ code: 'training_failed', message: e.message, param: null })
              : null,
            unixSeconds(now),
            job.id,
          )
          .run();
        status = e.type;
        await reg.release(job.id);
        break;
    }
  }
  await addEvent(env, {
    id: e.event_id,
    job_id: job.id,
    tenant_id: job.tenant_id,
    type: e.type,
    level: e.type === 'failed' ? 'error' : 'info',
    message: e.message || describe(e),
    data: {
      step: e.step,
      total_steps: e.total_steps,
      epoch: e.epoch,
      train_loss: e.loss,
      valid_loss: e.eval_loss,
      learning_rate: e.learning_rate,
      tokens_per_s: e.tokens_per_s,
      eta_s: e.eta_s,
    },
    created_at: unixSeconds(Date.parse(e.created_at)),
  });
  return { duplicate: false, job_status: status };
}

/** The final event: register the adapter, record the billable training tokens once, close the job. */
async function succeed(env: Env, job: JobRow, e: JobEvent, now: number): Promise<'succeeded'> {
  const manifest = e.adapter;
  if (!manifest)
    throw new ApiException(
      400,
      'A succeeded event must carry the adapter manifest.',
      'invalid_request_error',
      'missing_adapter',
      'adapter',
    );
  if (manifest.tenant !== job.tenant_id) {
    throw new ApiException(
      400,
      "The adapter manifest's tenant is not the job's.",
      'invalid_request_error',
      'tenant_mismatch',
      'adapter.tenant',
    );
  }
  const modelId = adapterModelId(job.model, job.suffix, manifest.adapter_id);
  const trainingTokens = e.billed_training_tokens ?? manifest.training.tokens;
  await registerAdapter(env, {
    id: manifest.adapter_id,
    tenant_id: job.tenant_id,
    model_id: modelId,
    backbone: job.model,
    job_id: job.id,
    version: manifest.version,
    sha256: manifest.weights.sha256,
    manifest,
    created_at: unixSeconds(now),
  });
  // One training usage event per job, whatever the event ids: billed once.
  await meter(env, job.tenant_id).record({
    id: `train:${job.id}`,
    kind: 'training',
    model: modelId,
    backbone: job.model,
    ts: now,
    prompt_tokens: 0,
    completion_tokens: 0,
    training_tokens: trainingTokens,
  });
  await env.DB.prepare(
    `UPDATE jobs SET status = 'succeeded', fine_tuned_model = ?, trained_tokens = ?, finished_at = ?
     WHERE id = ? AND status IN ('queued', 'running')`,
  )
    .bind(modelId, trainingTokens, unixSeconds(now), job.id)
    .run();
  return 'succeeded';
}

function describe(e: JobEvent): string {
  if (e.type === 'progress') return `Step ${e.step}/${e.total_steps}: training loss=${e.loss ?? 'n/a'}`;
  if (e.type === 'checkpoint') return `Checkpoint at step ${e.step}`;
  return `Job ${e.type}`;
}
