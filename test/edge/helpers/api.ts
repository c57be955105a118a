import { SELF } from 'cloudflare:test';
import { env } from 'cloudflare:workers';

export const EDGE = 'https://edge.test';

export async function call(
  path: string,
  init: { method?: string; key?: string | null; body?: unknown; headers?: Record<string, string> } = {},
): Promise<Response> {
  const headers: Record<string, string> = { ...init.headers };
  if (init.key) headers.authorization = `Bearer ${init.key}`;
  let body: BodyInit | undefined;
  if (init.body instanceof FormData || typeof init.body === 'string') body = init.body;
  else if (init.body !== undefined) {
    body = JSON.stringify(init.body);
    headers['content-type'] = 'application/json';
  }
  return SELF.fetch(`${EDGE}${path}`, {
    method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
    headers,
    body,
  });
}

export async function json<T = Record<string, unknown>>(res: Response, status = 200): Promise<T> {
  const text = await res.text();
  if (res.status !== status) throw new Error(`expected ${status}, got ${res.status}: ${text}`);
  return JSON.parse(text) as T;
}

export type ApiErrorBody = {
  error: { message: string; type: string; param: string | null; code: string | null };
};

/** A fresh tenant with one API key, through the admin API. */
export async function newTenant(name = 'acme', limits: Record<string, number> = {}) {
  const admin = env.ADMIN_TOKEN;
  const tenant = await json<{ id: string }>(
    await call('/admin/v1/tenants', { key: admin, body: { name, limits } }),
    201,
  );
  const key = await json<{ id: string; key: string }>(
    await call(`/admin/v1/tenants/${tenant.id}/keys`, { key: admin, body: { name: 'test' } }),
    201,
  );
  return { id: tenant.id, key: key.key, keyId: key.id };
}

export const CHAT_JSONL = [
  {
    messages: [
      { role: 'user', content: 'hi' },
      { role: 'assistant', content: 'hello' },
    ],
  },
  {
    messages: [
      { role: 'user', content: '2+2?' },
      { role: 'assistant', content: '4' },
    ],
  },
]
  .map((l) => JSON.stringify(l))
  .join('\n');

export async function uploadFile(key: string, text = CHAT_JSONL): Promise<{ id: string }> {
  const form = new FormData();
  form.set('purpose', 'fine-tune');
  form.set('file', new File([text], 'train.jsonl', { type: 'application/jsonl' }));
  return json(await call('/v1/files', { key, body: form }));
}

/** Polls until `check` returns a value (not undefined), e.g. for the queue consumer to run. */
export async function eventually<T>(check: () => Promise<T | undefined>, timeoutMs = 8000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error('eventually: timed out');
    await new Promise((r) => setTimeout(r, 100));
  }
}
