import { useState } from 'preact/hooks';
import { ApiError, api, call, type FileObject, type List, when } from '../api.ts';
import { html } from '../html.ts';
import { ErrorNote, useLoad } from '../load.ts';
import { parseUploadErrors, type UploadErrors } from '../upload-errors.ts';

const SHOWN_LINES = 500;

export function FilesPage() {
  const files = useLoad(() => api<List<FileObject>>('/v1/files?limit=100'), []);
  return html`<section>
    <h1>Files</h1>
    <${Upload} onUploaded=${files.reload} />
    <h2>Uploaded</h2>
    <${ErrorNote} error=${files.error} />
    <div class="table-wrap">
      <table>
        <thead><tr><th>ID</th><th>Name</th><th>Purpose</th><th>Format</th><th>Lines</th><th>Bytes</th><th>Created (UTC)</th></tr></thead>
        <tbody>
          ${(files.data?.data ?? []).map(
            (f) => html`<tr key=${f.id}>
              <td><code>${f.id}</code></td><td>${f.filename}</td><td>${f.purpose}</td><td>${f.format ?? '–'}</td>
              <td>${f.line_count}</td><td>${f.bytes}</td><td>${when(f.created_at)}</td>
            </tr>`,
          )}
        </tbody>
      </table>
    </div>
  </section>`;
}

interface Refused {
  lines: string[];
  errors: UploadErrors;
}

function Upload({ onUploaded }: { onUploaded: () => void }) {
  const [busy, setBusy] = useState(false);
  const [done, setDone] = useState<FileObject | null>(null);
  const [refused, setRefused] = useState<Refused | null>(null);
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    const input = (e.target as HTMLFormElement).elements.namedItem('upload-file') as HTMLInputElement;
    const file = input.files?.[0];
    if (!file) return;
    setBusy(true);
    setDone(null);
    setRefused(null);
    setError(null);
    const text = await file.text();
    try {
      const res = await call(`/v1/files?purpose=fine-tune&filename=${encodeURIComponent(file.name)}`, {
        body: text,
        contentType: 'application/jsonl',
      });
      setDone((await res.json()) as FileObject);
      onUploaded();
    } catch (err) {
      if (err instanceof ApiError && err.code === 'invalid_file') {
        setRefused({ lines: text.split(/\r?\n/), errors: parseUploadErrors(err.message) });
      } else setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return html`<form class="card" onSubmit=${submit} aria-busy=${busy}>
    <h2>Upload a JSONL training file</h2>
    <label for="upload-file">JSONL file (chat, prompt/completion or text/label lines)</label>
    <input id="upload-file" name="upload-file" type="file" accept=".jsonl,.json,application/jsonl" required />
    <button type="submit" disabled=${busy}>Upload</button>
    ${done && html`<p class="ok" role="status">Uploaded <code>${done.id}</code>: ${done.line_count} ${done.format} lines.</p>`}
    <${ErrorNote} error=${error} />
    ${refused && html`<${LineErrors} refused=${refused} />`}
  </form>`;
}

/** The file's lines with each refused line's errors beside it. */
function LineErrors({ refused }: { refused: Refused }) {
  const { errors, lines } = refused;
  const shown = lines.slice(0, SHOWN_LINES);
  return html`<div class="refused">
    <p class="error" role="alert">${errors.summary}${errors.more ? ` The first errors are shown; ${errors.more} more not quoted.` : ''}</p>
    ${errors.file.map((m) => html`<p class="error">file: ${m}</p>`)}
    <div class="table-wrap">
      <table class="lines" aria-label="File lines and their errors">
        <thead><tr><th>Line</th><th>Content</th><th>Error</th></tr></thead>
        <tbody>
          ${shown.map((content, i) => {
            const bad = errors.byLine.get(i + 1);
            return html`<tr key=${i} class=${bad ? 'bad' : ''} data-line=${i + 1}>
              <td>${i + 1}</td><td><code>${content}</code></td>
              <td class="line-error">${bad ? bad.join('; ') : ''}</td>
            </tr>`;
          })}
        </tbody>
      </table>
    </div>
  </div>`;
}
