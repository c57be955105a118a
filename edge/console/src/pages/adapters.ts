import { useState } from 'preact/hooks';
import {
  api,
  call,
  costOf,
  type List,
  type Model,
  type Price,
  readSse,
  type Usage,
  usd,
  when,
} from '../api.ts';
import { html } from '../html.ts';
import { ErrorNote, useLoad } from '../load.ts';
import { href } from '../router.ts';

type Prices = Record<string, Price>;
const usePrices = () => useLoad(() => api<{ data: Prices }>('/v1/usage/prices').then((p) => p.data), []);
const useModels = () => useLoad(() => api<List<Model>>('/v1/models').then((l) => l.data), []);

export function AdaptersPage() {
  const models = useModels();
  const adapters = (models.data ?? []).filter((m) => m.kind === 'adapter');
  return html`<section>
    <h1>Adapters</h1>
    <${ErrorNote} error=${models.error} />
    ${models.data && !adapters.length && html`<p>No adapters yet: a succeeded <a href="#/jobs">job</a> makes one.</p>`}
    <div class="table-wrap"><table>
      <thead><tr><th>Adapter</th><th>Backbone</th><th>Created (UTC)</th></tr></thead>
      <tbody>${adapters.map(
        (m) =>
          html`<tr key=${m.id}><td><a href=${href('adapters', m.id)}>${m.id}</a></td><td>${m.backbone}</td><td>${when(m.created)}</td></tr>`,
      )}</tbody>
    </table></div>
  </section>`;
}

export function AdapterPage({ id }: { id: string }) {
  const models = useModels();
  const prices = usePrices();
  const me = models.data?.find((m) => m.id === id);
  return html`<section>
    <h1>Adapter <code>${id}</code></h1>
    <${ErrorNote} error=${models.error ?? prices.error} />
    ${models.data && !me && html`<p class="error" role="alert">No adapter ${id} in this tenant.</p>`}
    ${me && html`<p>Backbone <strong>${me.backbone}</strong>, created ${when(me.created)}.</p>`}
    <${Playground} model=${id} price=${me && prices.data?.[me.backbone]} />
    ${models.data && html`<${Compare} current=${id} models=${models.data} prices=${prices.data ?? {}} />`}
  </section>`;
}

interface Turn {
  role: 'user' | 'assistant';
  content: string;
}

/** A chat with one adapter, streamed from /v1/chat/completions. */
function Playground({ model, price }: { model: string; price: Price | undefined }) {
  const [turns, setTurns] = useState<Turn[]>([]);
  const [draft, setDraft] = useState('');
  const [maxTokens, setMaxTokens] = useState(32);
  const [temperature, setTemperature] = useState(0);
  const [usage, setUsage] = useState<Usage | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const send = async (e: Event) => {
    e.preventDefault();
    if (!draft.trim() || busy) return;
    const history: Turn[] = [...turns, { role: 'user', content: draft }];
    setTurns([...history, { role: 'assistant', content: '' }]);
    setDraft('');
    setBusy(true);
    setError(null);
    try {
      const res = await call('/v1/chat/completions', {
        body: {
          model,
          messages: history,
          max_tokens: maxTokens,
          temperature,
          stream: true,
          stream_options: { include_usage: true },
        },
        accept: 'text/event-stream',
      });
      let answer = '';
      for await (const msg of readSse(res)) {
        if (msg.data === '[DONE]') break;
        const chunk = JSON.parse(msg.data) as {
          choices?: { delta?: { content?: string } }[];
          usage?: Usage;
          error?: { message: string };
        };
        if (chunk.error) throw new Error(chunk.error.message);
        answer += chunk.choices?.[0]?.delta?.content ?? '';
        setTurns([...history, { role: 'assistant', content: answer }]);
        if (chunk.usage) setUsage(chunk.usage);
      }
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return html`<div class="card">
    <h2>Playground</h2>
    <ol id="chat-log" class="chat" aria-live="polite">
      ${turns.map((t, i) => html`<li key=${i} class=${t.role}><strong>${t.role}</strong> <span class="content">${t.content}</span></li>`)}
    </ol>
    <form onSubmit=${send} class="grid-form">
      <label for="chat-input">Message</label>
      <textarea id="chat-input" rows="2" value=${draft} onInput=${(e: Event) => setDraft((e.target as HTMLTextAreaElement).value)}
        onKeyDown=${(e: KeyboardEvent) => {
          if (e.key === 'Enter' && !e.shiftKey) send(e);
        }}></textarea>
      <label for="chat-max">Max tokens</label>
      <input id="chat-max" type="number" min="1" max="2048" value=${maxTokens}
        onInput=${(e: Event) => setMaxTokens(Number((e.target as HTMLInputElement).value))} />
      <label for="chat-temp">Temperature</label>
      <input id="chat-temp" type="number" min="0" max="2" step="0.1" value=${temperature}
        onInput=${(e: Event) => setTemperature(Number((e.target as HTMLInputElement).value))} />
      <div class="actions">
        <button type="submit" disabled=${busy}>Send</button>
        <button type="button" class="secondary" onClick=${() => {
          setTurns([]);
          setUsage(null);
        }}>Clear</button>
      </div>
    </form>
    ${usage && html`<p id="chat-usage" class="hint">Last turn: ${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion tokens, ${usd(costOf(usage, price))}.</p>`}
    <${ErrorNote} error=${error} />
  </div>`;
}

interface Answer {
  model: string;
  content?: string;
  usage?: Usage;
  cost?: number | null;
  error?: string;
}

/**
 * One prompt to several adapters at once. The requests go out together, so the workers can run
 * them through one shared backbone pass; each answer shows its tokens and what it cost.
 */
function Compare({
  current,
  models,
  prices,
}: {
  current: string;
  models: Model[];
  prices: Record<string, Price>;
}) {
  const adapters = models.filter((m) => m.kind === 'adapter');
  const [picked, setPicked] = useState<Set<string>>(new Set([current]));
  const [prompt, setPrompt] = useState('');
  const [answers, setAnswers] = useState<Answer[]>([]);
  const [busy, setBusy] = useState(false);
  const toggle = (id: string) => {
    const next = new Set(picked);
    if (next.has(id)) next.delete(id);
    else next.add(id);
    setPicked(next);
  };
  const run = async (e: Event) => {
    e.preventDefault();
    const chosen = adapters.filter((m) => picked.has(m.id));
    setBusy(true);
    setAnswers(chosen.map((m) => ({ model: m.id })));
    const done = await Promise.all(
      chosen.map(async (m): Promise<Answer> => {
        try {
          const r = await api<{ choices: { message: { content: string } }[]; usage: Usage }>(
            '/v1/chat/completions',
            {
              body: {
                model: m.id,
                messages: [{ role: 'user', content: prompt }],
                max_tokens: 32,
                temperature: 0,
              },
            },
          );
          return {
            model: m.id,
            content: r.choices[0]?.message.content ?? '',
            usage: r.usage,
            cost: costOf(r.usage, prices[m.backbone]),
          };
        } catch (err) {
          return { model: m.id, error: (err as Error).message };
        }
      }),
    );
    setAnswers(done);
    setBusy(false);
  };
  const total = answers.reduce((s, a) => s + (a.cost ?? 0), 0);
  return html`<div class="card">
    <h2>Compare adapters</h2>
    <form onSubmit=${run} class="grid-form">
      <fieldset>
        <legend>Adapters</legend>
        ${adapters.map(
          (m) => html`<label class="check" key=${m.id}><input type="checkbox" name="compare" value=${m.id}
            checked=${picked.has(m.id)} onChange=${() => toggle(m.id)} /> ${m.id}</label>`,
        )}
      </fieldset>
      <label for="compare-prompt">Prompt</label>
      <textarea id="compare-prompt" rows="2" required value=${prompt}
        onInput=${(e: Event) => setPrompt((e.target as HTMLTextAreaElement).value)}></textarea>
      <button type="submit" disabled=${busy || picked.size === 0}>Compare</button>
    </form>
    <div class="compare" id="compare-results" aria-live="polite">
      ${answers.map(
        (a) => html`<article class="answer" key=${a.model} data-model=${a.model}>
          <h3>${a.model}</h3>
          ${a.error ? html`<p class="error">${a.error}</p>` : html`<p class="content">${a.content ?? '…'}</p>`}
          ${a.usage && html`<p class="hint">${a.usage.prompt_tokens} prompt + ${a.usage.completion_tokens} completion tokens · <span class="cost">${usd(a.cost ?? null)}</span></p>`}
        </article>`,
      )}
    </div>
    ${answers.some((a) => a.usage) && html`<p id="compare-total">Total: <strong>${usd(total)}</strong> for ${answers.length} answers.</p>`}
  </div>`;
}
