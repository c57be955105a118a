// The console's one door to the API: same origin, the key in an Authorization header (never in a
// URL), kept in sessionStorage so it ends with the tab.

const KEY = 'ladder.apiKey';
const ADMIN = 'ladder.adminToken';

export const session = {
  key: () => sessionStorage.getItem(KEY),
  admin: () => sessionStorage.getItem(ADMIN),
  setKey: (k: string) => sessionStorage.setItem(KEY, k),
  setAdmin: (t: string) => sessionStorage.setItem(ADMIN, t),
  signOut: () => {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(ADMIN);
  },
};

/** An OpenAI-shaped error answer: `{ error: { message, type, param, code } }`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null,
    readonly code: string | null,
  ) {
    super(message);
  }
}

export interface CallOptions {
  method?: string;
  /** JSON-encoded unless it is a string (sent as is, with `contentType`). */
  body?: unknown;
  contentType?: string;
  /** Use the admin token instead of the tenant's API key. */
  admin?: boolean;
  signal?: AbortSignal;
  accept?: string;
  lastEventId?: string;
}

export async function call(path: string, opts: CallOptions = {}): Promise<Response> {
  const secret = opts.admin ? session.admin() : session.key();
  const headers: Record<string, string> = {};
  if (secret) headers.authorization = `Bearer ${secret}`;
  if (opts.accept) headers.accept = opts.accept;
  if (opts.lastEventId) headers['last-event-id'] = opts.lastEventId;
  let body: string | undefined;
  if (typeof opts.body === 'string') {
    body = opts.body;
    headers['content-type'] = opts.contentType ?? 'text/plain';
  } else if (opts.body !== undefined) {
    body = JSON.stringify(opts.body);
    headers['content-type'] = 'application/json';
  }
  const res = await fetch(path, {
    method: opts.method ?? (body === undefined ? 'GET' : 'POST'),
    headers,
    body,
    signal: opts.signal ?? null,
  });
  if (!res.ok) throw await errorOf(res);
  return res;
}

export async function api<T>(path: string, opts: CallOptions = {}): Promise<T> {
  return (await (await call(path, opts)).json()) as T;
}

async function errorOf(res: Response): Promise<ApiError> {
  const text = await res.text();
  try {
    const e = (
      JSON.parse(text) as { error: { message: string; param?: string | null; code?: string | null } }
    ).error;
    return new ApiError(res.status, e.message, e.param ?? null, e.code ?? null);
  } catch {
    return new ApiError(res.status, text || res.statusText, null, null);
  }
}

export interface SseMessage {
  id?: string;
  event?: string;
  data: string;
}

/** Server-sent events from a fetch body (EventSource cannot send an Authorization header). */
export async function* readSse(res: Response): AsyncGenerator<SseMessage> {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    for (let cut = buffer.search(/\r?\n\r?\n/); cut >= 0; cut = buffer.search(/\r?\n\r?\n/)) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, '');
      const msg: SseMessage = { data: '' };
      const data: string[] = [];
      for (const line of block.split(/\r?\n/)) {
        const colon = line.indexOf(':');
        if (colon === 0) continue; // a comment
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'data') data.push(value);
        else if (field === 'id') msg.id = value;
        else if (field === 'event') msg.event = value;
      }
      msg.data = data.join('\n');
      if (data.length) yield msg;
    }
  }
}

// The API's shapes, as far as the console reads them.
export interface FileObject {
  id: string;
  filename: string;
  bytes: number;
  created_at: number;
  purpose: string;
  format: string | null;
  line_count: number;
}
export interface Job {
  id: string;
  model: string;
  status: string;
  created_at: number;
  finished_at: number | null;
  fine_tuned_model: string | null;
  training_file: string;
  hyperparameters: Record<string, unknown>;
  method: { type: string } & Record<string, { hyperparameters?: Record<string, unknown> } | string>;
  trained_tokens: number | null;
  error: { code: string; message: string; param: string | null } | null;
  suffix: string | null;
  attempt: number;
}
export interface JobEvent {
  id: string;
  created_at: number;
  level: 'info' | 'warn' | 'error';
  message: string;
  type: 'message' | 'metrics';
  data: Record<string, unknown>;
}
export interface Checkpoint {
  id: string;
  step_number: number;
  fine_tuned_model_checkpoint: string;
  created_at: number;
  metrics: Record<string, number>;
}
export interface Model {
  id: string;
  backbone: string;
  kind: 'backbone' | 'adapter';
  created: number;
}
export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}
export interface Price {
  prompt_per_1k: number;
  completion_per_1k: number;
  training_per_1k: number;
}
export interface List<T> {
  data: T[];
  has_more: boolean;
}

/** What a completion cost, priced as /v1/usage prices it (an adapter at its backbone's price). */
export function costOf(usage: Usage, price: Price | undefined): number | null {
  if (!price) return null;
  return (
    (usage.prompt_tokens * price.prompt_per_1k + usage.completion_tokens * price.completion_per_1k) / 1000
  );
}

export const usd = (x: number | null) => (x === null ? '–' : `$${x.toFixed(6)}`);
export const when = (unixS: number) => new Date(unixS * 1000).toISOString().replace('T', ' ').slice(0, 19);
