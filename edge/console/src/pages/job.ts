import { useEffect, useMemo, useState } from 'preact/hooks';
import { api, type Checkpoint, call, type Job, type JobEvent, type List, readSse, when } from '../api.ts';
import { Chart, color } from '../chart.ts';
import { html } from '../html.ts';
import { ErrorNote, useLoad } from '../load.ts';
import { href } from '../router.ts';

const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);

interface Point {
  step: number;
  train_loss?: number;
  valid_loss?: number;
  train_mean_token_accuracy?: number;
  valid_mean_token_accuracy?: number;
}

/**
 * The job's events, oldest first, from its server-sent stream; reconnects after the last event
 * it saw (Last-Event-ID) until the job has ended.
 */
function useJobEvents(jobId: string, onEvent: () => void): { events: JobEvent[]; error: string | null } {
  const [events, setEvents] = useState<JobEvent[]>([]);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    const abort = new AbortController();
    setEvents([]);
    (async () => {
      let last: string | undefined;
      while (!abort.signal.aborted) {
        const res = await call(`/v1/fine_tuning/jobs/${encodeURIComponent(jobId)}/events?stream=true`, {
          accept: 'text/event-stream',
          signal: abort.signal,
          ...(last ? { lastEventId: last } : {}),
        });
        for await (const msg of readSse(res)) {
          if (msg.data === '[DONE]') break;
          const event = JSON.parse(msg.data) as JobEvent;
          last = msg.id ?? event.id;
          setEvents((prev) => [...prev, event]);
          if (event.type !== 'metrics') onEvent();
        }
        const job = await api<Job>(`/v1/fine_tuning/jobs/${encodeURIComponent(jobId)}`, {
          signal: abort.signal,
        });
        if (TERMINAL.has(job.status)) break;
      }
    })().catch((e: Error) => {
      if (!abort.signal.aborted) setError(e.message);
    });
    return () => abort.abort();
  }, [jobId]);
  return { events, error };
}

export function JobPage({ id }: { id: string }) {
  const job = useLoad(() => api<Job>(`/v1/fine_tuning/jobs/${encodeURIComponent(id)}`), [id]);
  const checkpoints = useLoad(
    () => api<List<Checkpoint>>(`/v1/fine_tuning/jobs/${encodeURIComponent(id)}/checkpoints?limit=100`),
    [id],
  );
  const { events, error } = useJobEvents(id, () => {
    job.reload();
    checkpoints.reload();
  });
  const [cancelError, setCancelError] = useState<string | null>(null);

  const points = useMemo(
    () =>
      events
        .filter((e) => e.type === 'metrics' && typeof e.data.step === 'number')
        .map((e) => e.data as unknown as Point),
    [events],
  );
  const steps = points.map((p) => p.step);
  const val = (k: keyof Point) => points.map((p) => (typeof p[k] === 'number' ? (p[k] as number) : null));
  const j = job.data;

  const cancel = async () => {
    try {
      await api(`/v1/fine_tuning/jobs/${encodeURIComponent(id)}/cancel`, { method: 'POST' });
      job.reload();
    } catch (e) {
      setCancelError((e as Error).message);
    }
  };

  return html`<section>
    <h1>Job <code>${id}</code></h1>
    <${ErrorNote} error=${job.error ?? error ?? cancelError} />
    ${
      j &&
      html`<div class="card">
        <dl class="facts">
          <dt>Status</dt><dd><span id="job-status" class=${`status ${j.status}`}>${j.status}</span></dd>
          <dt>Method</dt><dd>${j.method.type}</dd>
          <dt>Backbone</dt><dd>${j.model}</dd>
          <dt>Training file</dt><dd><code>${j.training_file}</code></dd>
          <dt>Adapter</dt><dd>${j.fine_tuned_model ? html`<a href=${href('adapters', j.fine_tuned_model)}>${j.fine_tuned_model}</a>` : '–'}</dd>
          <dt>Trained tokens</dt><dd>${j.trained_tokens ?? '–'}</dd>
          <dt>Created</dt><dd>${when(j.created_at)}</dd>
          <dt>Attempt</dt><dd>${j.attempt}</dd>
          ${j.error && html`<dt>Error</dt><dd class="error">${j.error.code}: ${j.error.message}</dd>`}
        </dl>
        ${!TERMINAL.has(j.status) && html`<button type="button" class="danger" onClick=${cancel}>Cancel job</button>`}
      </div>
      <h2>Hyperparameters</h2>
      <p class="hint">Resolved by the worker when the job starts ('auto' until then).</p>
      <div class="table-wrap"><table id="hyperparameters">
        <tbody>${Object.entries(j.hyperparameters).map(([k, v]) => html`<tr><th scope="row">${k}</th><td>${String(v)}</td></tr>`)}</tbody>
      </table></div>`
    }
    <h2>Curves</h2>
    <p class="hint" aria-live="polite">${points.length} step(s) measured${steps.length ? `, last step ${steps[steps.length - 1]}` : ''}.</p>
    <div class="charts">
      <${Chart} id="loss-chart" title="Loss" xLabel="step" yLabel="loss"
        data=${[steps, val('train_loss'), val('valid_loss')]}
        series=${[{ label: 'training loss', stroke: color(0) }, { label: 'validation loss', stroke: color(1) }]} />
      <${Chart} id="accuracy-chart" title="Token accuracy" xLabel="step" yLabel="accuracy"
        data=${[steps, val('train_mean_token_accuracy'), val('valid_mean_token_accuracy')]}
        series=${[{ label: 'training accuracy', stroke: color(2) }, { label: 'validation accuracy', stroke: color(3) }]} />
    </div>
    <h2>Checkpoints</h2>
    <div class="table-wrap"><table id="checkpoints">
      <thead><tr><th>Step</th><th>Checkpoint</th><th>Training loss</th><th>Validation loss</th><th>Created (UTC)</th></tr></thead>
      <tbody>${(checkpoints.data?.data ?? []).map(
        (
          c,
        ) => html`<tr key=${c.id}><td>${c.step_number}</td><td><code>${c.fine_tuned_model_checkpoint}</code></td>
          <td>${c.metrics.train_loss?.toFixed(4) ?? '–'}</td><td>${c.metrics.valid_loss?.toFixed(4) ?? '–'}</td><td>${when(c.created_at)}</td></tr>`,
      )}</tbody>
    </table></div>
    <h2>Event log</h2>
    <ol id="event-log" class="events" reversed>
      ${events
        .filter((e) => e.type !== 'metrics')
        .reverse()
        .map(
          (e) => html`<li key=${e.id} class=${e.level}><time>${when(e.created_at)}</time> ${e.message}</li>`,
        )}
    </ol>
  </section>`;
}
