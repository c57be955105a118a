import { useState } from 'preact/hooks';
import { api, usd } from '../api.ts';
import { Chart, color } from '../chart.ts';
import { html } from '../html.ts';
import { ErrorNote, useLoad } from '../load.ts';

interface Bucket {
  day: string;
  model: string;
  prompt_tokens: number;
  completion_tokens: number;
  training_tokens: number;
  requests: number;
  cost_usd: number;
}
interface Report {
  data: Bucket[];
  total_cost_usd: number;
}

const tokensOf = (b: Bucket) => b.prompt_tokens + b.completion_tokens + b.training_tokens;

/** Day x model grids from /v1/usage's buckets: x = the days (unix s), one series per model. */
export function byDayAndModel(report: Report, value: (b: Bucket) => number) {
  const days = [...new Set(report.data.map((b) => b.day))].sort();
  const models = [...new Set(report.data.map((b) => b.model))].sort();
  const xs = days.map((d) => Date.parse(`${d}T00:00:00Z`) / 1000);
  const ys = models.map((m) =>
    days.map((d) => {
      const b = report.data.find((x) => x.day === d && x.model === m);
      return b ? value(b) : null;
    }),
  );
  return { models, data: [xs, ...ys] };
}

export function UsagePage() {
  const [range, setRange] = useState({ start: '', end: '' });
  const report = useLoad(() => {
    const q = new URLSearchParams();
    if (range.start) q.set('start_date', range.start);
    if (range.end) q.set('end_date', range.end);
    return api<Report>(`/v1/usage${q.size ? `?${q}` : ''}`);
  }, [range.start, range.end]);
  const r = report.data;
  const tokens = r && byDayAndModel(r, tokensOf);
  const cost = r && byDayAndModel(r, (b) => b.cost_usd);
  const perModel = new Map<string, Bucket>();
  for (const b of r?.data ?? []) {
    const m = perModel.get(b.model) ?? {
      ...b,
      prompt_tokens: 0,
      completion_tokens: 0,
      training_tokens: 0,
      requests: 0,
      cost_usd: 0,
    };
    m.prompt_tokens += b.prompt_tokens;
    m.completion_tokens += b.completion_tokens;
    m.training_tokens += b.training_tokens;
    m.requests += b.requests;
    m.cost_usd += b.cost_usd;
    perModel.set(b.model, m);
  }
  const submit = (e: Event) => {
    e.preventDefault();
    const f = new FormData(e.target as HTMLFormElement);
    setRange({ start: String(f.get('start') ?? ''), end: String(f.get('end') ?? '') });
  };
  return html`<section>
    <h1>Usage</h1>
    <form class="card inline-form" onSubmit=${submit}>
      <label for="usage-start">From (UTC day)</label><input id="usage-start" name="start" type="date" />
      <label for="usage-end">To</label><input id="usage-end" name="end" type="date" />
      <button type="submit">Show</button>
    </form>
    <${ErrorNote} error=${report.error} />
    ${
      tokens &&
      cost &&
      html`<div class="charts">
        <${Chart} id="usage-tokens" title="Tokens by day and model" xLabel="day" yLabel="tokens" time bars
          data=${tokens.data} series=${tokens.models.map((m, i) => ({ label: m, stroke: color(i) }))} />
        <${Chart} id="usage-cost" title="Cost (USD) by day and model" xLabel="day" yLabel="USD" time bars
          data=${cost.data} series=${cost.models.map((m, i) => ({ label: m, stroke: color(i) }))} />
      </div>`
    }
    <h2>By model</h2>
    <div class="table-wrap"><table id="usage-by-model">
      <thead><tr><th>Model</th><th>Prompt</th><th>Completion</th><th>Training</th><th>Requests</th><th>Cost</th></tr></thead>
      <tbody>${[...perModel.values()].map(
        (
          m,
        ) => html`<tr key=${m.model}><td>${m.model}</td><td>${m.prompt_tokens}</td><td>${m.completion_tokens}</td>
          <td>${m.training_tokens}</td><td>${m.requests}</td><td>${usd(m.cost_usd)}</td></tr>`,
      )}</tbody>
      ${r && html`<tfoot><tr><th scope="row">Total</th><td colspan="4"></td><td id="usage-total">${usd(r.total_cost_usd)}</td></tr></tfoot>`}
    </table></div>
  </section>`;
}
