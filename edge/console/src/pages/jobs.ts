import { useEffect, useState } from 'preact/hooks';
import { api, type FileObject, type Job, type List, type Model, when } from '../api.ts';
import { html } from '../html.ts';
import { ErrorNote, useLoad } from '../load.ts';
import { go, href } from '../router.ts';

export function JobsPage() {
  const jobs = useLoad(() => api<List<Job>>('/v1/fine_tuning/jobs?limit=100'), []);
  return html`<section>
    <h1>Fine-tuning jobs</h1>
    <${CreateJob} />
    <h2>Jobs</h2>
    <${ErrorNote} error=${jobs.error} />
    <div class="table-wrap">
      <table>
        <thead><tr><th>ID</th><th>Status</th><th>Method</th><th>Backbone</th><th>Adapter</th><th>Created (UTC)</th></tr></thead>
        <tbody>
          ${(jobs.data?.data ?? []).map(
            (j) => html`<tr key=${j.id}>
              <td><a href=${href('jobs', j.id)}>${j.id}</a></td>
              <td><span class=${`status ${j.status}`}>${j.status}</span></td>
              <td>${j.method.type}</td><td>${j.model}</td>
              <td>${j.fine_tuned_model ? html`<a href=${href('adapters', j.fine_tuned_model)}>${j.fine_tuned_model}</a>` : '–'}</td>
              <td>${when(j.created_at)}</td>
            </tr>`,
          )}
        </tbody>
      </table>
    </div>
  </section>`;
}

const BACKBONE_POLL_MS = 2000;
const autoOrNumber = (v: string) => (v.trim() === '' || v.trim() === 'auto' ? 'auto' : Number(v));

function CreateJob() {
  const files = useLoad(() => api<List<FileObject>>('/v1/files?limit=100'), []);
  const models = useLoad(() => api<List<Model>>('/v1/models'), []);
  const [error, setError] = useState<string | null>(null);
  const trainable = (files.data?.data ?? []).filter((f) => f.purpose === 'fine-tune');
  const backbones = (models.data?.data ?? []).filter((m) => m.kind === 'backbone');
  // A backbone is listed once a live worker serves it: ask again until one does.
  const waiting = models.data !== undefined && backbones.length === 0;
  useEffect(() => {
    if (!waiting) return;
    const t = setInterval(models.reload, BACKBONE_POLL_MS);
    return () => clearInterval(t);
  }, [waiting]);
  const submit = async (e: Event) => {
    e.preventDefault();
    const f = new FormData(e.target as HTMLFormElement);
    const s = (k: string) => String(f.get(k) ?? '');
    const type = s('method');
    const hyperparameters: Record<string, unknown> = {
      n_epochs: autoOrNumber(s('n_epochs')),
      batch_size: autoOrNumber(s('batch_size')),
    };
    if (s('learning_rate').trim()) hyperparameters.learning_rate = Number(s('learning_rate'));
    try {
      const job = await api<Job>('/v1/fine_tuning/jobs', {
        body: {
          model: s('model'),
          training_file: s('training_file'),
          ...(s('validation_file') ? { validation_file: s('validation_file') } : {}),
          ...(s('suffix').trim() ? { suffix: s('suffix').trim() } : {}),
          method: { type, [type]: { hyperparameters } },
        },
      });
      go('jobs', job.id);
    } catch (err) {
      setError((err as Error).message);
    }
  };
  return html`<form class="card grid-form" onSubmit=${submit}>
    <h2>New job</h2>
    <label for="job-file">Training file</label>
    <select id="job-file" name="training_file" required>
      ${trainable.map((f) => html`<option value=${f.id}>${f.filename} (${f.id})</option>`)}
    </select>
    <label for="job-valid">Validation file</label>
    <select id="job-valid" name="validation_file">
      <option value="">none (a share of the training file)</option>
      ${trainable.map((f) => html`<option value=${f.id}>${f.filename} (${f.id})</option>`)}
    </select>
    <label for="job-model">Backbone</label>
    <select id="job-model" name="model" required>
      ${backbones.map((m) => html`<option value=${m.id}>${m.id}</option>`)}
    </select>
    ${waiting && html`<p class="hint" role="status">No worker serves a backbone yet; waiting for one to check in.</p>`}
    <label for="job-method">Method</label>
    <select id="job-method" name="method">
      <option value="lst">LST (ladder side network)</option>
      <option value="xladder">xLadder</option>
      <option value="supervised">supervised (LST)</option>
    </select>
    <label for="job-suffix">Suffix</label>
    <input id="job-suffix" name="suffix" maxlength="64" />
    <label for="job-epochs">Epochs</label>
    <input id="job-epochs" name="n_epochs" value="auto" inputmode="numeric" />
    <label for="job-batch">Batch size</label>
    <input id="job-batch" name="batch_size" value="auto" inputmode="numeric" />
    <label for="job-lr">Learning rate</label>
    <input id="job-lr" name="learning_rate" placeholder="auto" inputmode="decimal" />
    <button type="submit">Create job</button>
    <${ErrorNote} error=${error ?? files.error ?? models.error} />
  </form>`;
}
