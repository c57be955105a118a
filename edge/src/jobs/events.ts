import type { JobEvent } from '@ladder/schemas';
import { meter } from '../durable-objects/tenant-meter.ts';
import { registry } from '../durable-objects/worker-registry.ts';
import { ApiException } from '../lib/errors.ts';
import { unixSeconds } from '../lib/ids.ts';
import { adapterModelId, registerAdapter } from '../store/adapters.ts';
import { addEvent, type JobRow, TERMINAL } from '../store/jobs.ts';
import { purgeOnWorkers } from './purge.ts';
import { writeResultsFile } from './results.ts';

/**
 * Applies a worker's signed progress/final event to its job. Every effect is idempotent (guarded
 * updates, INSERT OR IGNORE, the meter's dedup by id), and the event row is written last, so a
 * callback that failed half-way is completed by the worker's retry and a duplicate changes nothing.
 *
 * A finished job takes no more progress, with one exception: training a cancelled job consumed.
 * Its worker's `cancelled` event bills the tokens trained up to the stop, and a `succeeded` event
 * that arrives after the cancel (the run ended before the worker heard) bills the run but
 * registers nothing: the cancel stands, and the adapter is purged from the workers. Either way a
 * job is billed once (`train:<job id>`), so cancelling and recreating a job is never free.
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
  let modelId: string | null = null;
  if (job.status === 'cancelled' && (e.type === 'cancelled' || e.type === 'succeeded')) {
    await billCancelled(env, job, e, now);
    if (e.type === 'succeeded') await purgeOrphan(env, job, e);
  } else if (!TERMINAL.has(job.status)) {
    const reg = registry(env);
    switch (e.type) {
      case 'started':
        await reg.renew(job.id, now);
        if (e.hyperparameters) {
          await env.DB.prepare('UPDATE jobs SET hyperparameters = ? WHERE id = ?')
            .bind(JSON.stringify(e.hyperparameters), job.id)
            .run();
        }
        break;
      case 'progress':
      case 'metrics':
        await reg.renew(job.id, now);
        if (e.eta_s !== null && job.status === 'running') {
          await env.DB.prepare('UPDATE jobs SET estimated_finish = ? WHERE id = ?')
            .bind(unixSeconds(now) + Math.round(e.eta_s), job.id)
            .run();
        }
        break;
      case 'warning':
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
            JSON.stringify(e.metrics ?? { step: e.step, train_loss: e.loss, valid_loss: e.eval_loss }),
            unixSeconds(Date.parse(e.created_at)),
          )
          .run();
        break;
      case 'paused':
        // The worker stopped at a checkpoint because the edge asked it to, and the edge marked the
        // job paused then. The event changes no status: redelivered late, after a resume, it must
        // not pause the next attempt (it carries no attempt number to tell them apart).
        break;
      case 'succeeded':
        modelId = await succeed(env, job, e, now);
        status = 'succeeded';
        await reg.release(job.id);
        break;
      case 'failed':
      case 'cancelled':
        await env.DB.prepare(
          `UPDATE jobs SET status = ?, error = ?, finished_at = ? WHERE id = ? AND status IN ('queued', 'running', 'paused')`,
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
        if (e.type === 'cancelled') await billCancelled(env, job, e, now);
        break;
    }
  }
  await addEvent(env, {
    id: e.event_id,
    job_id: job.id,
    tenant_id: job.tenant_id,
    type: e.type,
    level: e.type === 'failed' ? 'error' : e.type === 'warning' ? 'warn' : 'info',
    message: describe(e, modelId),
    data: eventData(e),
    created_at: unixSeconds(Date.parse(e.created_at)),
  });
  if (modelId) {
    // After the final event's row, so the result file has every metrics event before it.
    await addEvent(env, {
      id: `${job.id}-completed`,
      job_id: job.id,
      tenant_id: job.tenant_id,
      type: 'completed',
      message: 'The job has successfully completed',
      created_at: unixSeconds(now),
    });
  }
  return { duplicate: false, job_status: status };
}

/**
 * The final event: register the adapter, record the billable training tokens once, write the
 * result file, close the job. Answers the adapter's model name.
 */
async function succeed(env: Env, job: JobRow, e: JobEvent, now: number): Promise<string> {
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
  const billed = e.billed_training_tokens ?? manifest.training.tokens;
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
    training_tokens: billed,
  });
  const resultFile = await writeResultsFile(env, job, e.metrics, now);
  await env.DB.prepare(
    `UPDATE jobs SET status = 'succeeded', fine_tuned_model = ?, trained_tokens = ?, result_files = ?,
       estimated_finish = NULL, finished_at = ?
     WHERE id = ? AND status IN ('queued', 'running', 'paused')`,
  )
    .bind(modelId, e.trained_tokens ?? billed, JSON.stringify([resultFile]), unixSeconds(now), job.id)
    .run();
  return modelId;
}

/**
 * The training a cancelled job consumed, billed once per job (the same usage id as a success's)
 * under the backbone's name, since it left no model; the job shows it as trained_tokens.
 */
async function billCancelled(env: Env, job: JobRow, e: JobEvent, now: number): Promise<void> {
  const tokens = e.trained_tokens ?? e.billed_training_tokens ?? e.adapter?.training.tokens ?? 0;
  if (tokens <= 0) return;
  await meter(env, job.tenant_id).record({
    id: `train:${job.id}`,
    kind: 'training',
    model: job.model,
    backbone: job.model,
    ts: now,
    prompt_tokens: 0,
    completion_tokens: 0,
    training_tokens: tokens,
  });
  await env.DB.prepare(
    `UPDATE jobs SET trained_tokens = ? WHERE id = ? AND status = 'cancelled' AND trained_tokens IS NULL`,
  )
    .bind(tokens, job.id)
    .run();
}

/** The adapter of a run that finished after its job was cancelled: deleted from every worker, never registered. */
async function purgeOrphan(env: Env, job: JobRow, e: JobEvent): Promise<void> {
  if (!e.adapter || e.adapter.tenant !== job.tenant_id) return;
  const { adapter_id, version } = e.adapter;
  await purgeOnWorkers(
    env,
    [{ tenant: job.tenant_id, job_id: job.id, adapter: { adapter_id, version } }],
    [job.worker_id],
  );
}

/** What a public event's `data` holds: a metrics event's figures OpenAI-named, with Ladder's beside them. */
function eventData(e: JobEvent): Record<string, unknown> {
  const progress = {
    epoch: e.epoch,
    learning_rate: e.learning_rate,
    tokens_per_s: e.tokens_per_s,
    eta_s: e.eta_s,
  };
  switch (e.type) {
    case 'metrics':
      return { step: e.step, ...e.metrics, total_steps: e.total_steps, ...progress };
    case 'progress':
      return {
        step: e.step,
        total_steps: e.total_steps,
        train_loss: e.loss,
        valid_loss: e.eval_loss,
        ...progress,
      };
    case 'started':
      return e.hyperparameters ? { hyperparameters: e.hyperparameters } : {};
    case 'checkpoint':
      return { step: e.step, ...e.metrics };
    default:
      return { step: e.step, total_steps: e.total_steps };
  }
}

const figure = (x: number) => String(Number(x.toFixed(4)));

/** Messages in OpenAI's words where it has them; the worker's own text otherwise. */
function describe(e: JobEvent, modelId: string | null): string {
  switch (e.type) {
    case 'started':
      return e.message ? `Fine-tuning job started: ${e.message}` : 'Fine-tuning job started';
    case 'metrics': {
      const m = e.metrics;
      if (!m) return `Step ${e.step}/${e.total_steps}`;
      const parts = [`training loss=${figure(m.train_loss)}`];
      if (m.valid_loss !== undefined) parts.push(`validation loss=${figure(m.valid_loss)}`);
      if (m.full_valid_loss !== undefined) parts.push(`full validation loss=${figure(m.full_valid_loss)}`);
      return `Step ${m.step}/${e.total_steps}: ${parts.join(', ')}`;
    }
    case 'progress': {
      // The worker's pace beside its metrics events (which carry the loss): no second loss line.
      const pace = [
        e.tokens_per_s === null ? null : `${Math.round(e.tokens_per_s)} tokens/s`,
        e.eta_s === null ? null : `about ${Math.round(e.eta_s)}s left`,
      ].filter(Boolean);
      return `Step ${e.step}/${e.total_steps}${pace.length ? `: ${pace.join(', ')}` : ''}`;
    }
    case 'checkpoint':
      return `Checkpoint created at step ${e.step}`;
    case 'paused':
      return e.message || `Fine-tuning job paused at step ${e.step}`;
    case 'succeeded':
      return modelId ? `New fine-tuned model created: ${modelId}` : e.message || 'Fine-tuning job succeeded';
    case 'failed':
      return e.message || 'Fine-tuning job failed';
    case 'cancelled':
      return e.message || 'Fine-tuning job cancelled';
    default:
      return e.message || `Job ${e.type}`;
  }
}
