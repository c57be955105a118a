import { describeIssues, FileObject, parseApiError } from '@ladder/schemas';
import type { z } from 'zod';
import { ApiRequestError, CliError } from './errors.ts';
import { readSse, type SseEvent } from './sse.ts';

/** Which secret a route needs: a tenant's API key (`/v1/...`) or the admin token (`/admin/...`). */
export type Auth = 'key' | 'admin';

export interface RequestOptions {
  /** Default: the API key. */
  auth?: Auth;
  query?: Record<string, string | number | undefined>;
  /** Sent as JSON. */
  body?: unknown;
  headers?: Record<string, string>;
}

export interface ClientOptions {
  baseUrl: string;
  apiKey: string | null;
  adminToken: string | null;
}

/** The public and admin API over fetch: answers checked against the shared schemas, errors made readable. */
export class LadderClient {
  constructor(private readonly opts: ClientOptions) {}

  get baseUrl(): string {
    return this.opts.baseUrl;
  }

  /** One request whose 2xx answer is JSON of `schema`'s shape. */
  async json<T>(
    schema: z.ZodType<T>,
    method: string,
    path: string,
    options: RequestOptions = {},
  ): Promise<T> {
    const res = await this.send(method, path, options);
    const text = await res.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new CliError(`unexpected answer from ${method} ${path}: not JSON: ${text.slice(0, 200)}`);
    }
    const parsed = schema.safeParse(body);
    if (!parsed.success)
      throw new CliError(`unexpected answer from ${method} ${path}: ${describeIssues(parsed.error)}`);
    return parsed.data;
  }

  /** Uploads a JSONL training file as multipart/form-data, the way OpenAI clients do. */
  upload(filename: string, bytes: Uint8Array): Promise<FileObject> {
    const form = new FormData();
    form.append('purpose', 'fine-tune');
    form.append('file', new Blob([bytes], { type: 'application/jsonl' }), filename);
    return this.json(FileObject, 'POST', '/v1/files', { body: form });
  }

  /** A server-sent event stream (job events, chat chunks). */
  async *events(method: string, path: string, options: RequestOptions = {}): AsyncGenerator<SseEvent> {
    const res = await this.send(method, path, {
      ...options,
      headers: { accept: 'text/event-stream', ...options.headers },
    });
    if (!res.body) return;
    yield* readSse(res.body);
  }

  /** fetch with the right secret; a non-2xx answer becomes an ApiRequestError. */
  private async send(method: string, path: string, options: RequestOptions): Promise<Response> {
    const url = new URL(`${this.opts.baseUrl}${path}`);
    for (const [name, value] of Object.entries(options.query ?? {}))
      if (value !== undefined) url.searchParams.set(name, String(value));
    const headers: Record<string, string> = {
      authorization: `Bearer ${this.secret(options.auth ?? 'key')}`,
      ...options.headers,
    };
    let body: FormData | string | undefined;
    if (options.body instanceof FormData) body = options.body;
    else if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers['content-type'] = 'application/json';
    }
    let res: Response;
    try {
      res = await fetch(url, { method, headers, body });
    } catch (err) {
      throw this.unreachable(err);
    }
    if (!res.ok) throw await apiError(res);
    return res;
  }

  private secret(auth: Auth): string {
    if (auth === 'admin') {
      if (this.opts.adminToken) return this.opts.adminToken;
      throw new CliError(
        'no admin token: pass --admin-token or set LADDER_ADMIN_TOKEN (locally: ADMIN_TOKEN in edge/wrangler.jsonc)',
      );
    }
    if (this.opts.apiKey) return this.opts.apiKey;
    throw new CliError(
      "no API key: pass --api-key or set LADDER_API_KEY (`npm start` writes its development tenant's key to .data/dev-tenant.json)",
    );
  }

  private unreachable(err: unknown): CliError {
    const code = errorCode(err);
    if (code === 'ECONNREFUSED') {
      return new CliError(
        `cannot reach Ladder at ${this.opts.baseUrl} (connection refused). Is the platform running? Start it with \`npm start\`, or point --base-url / LADDER_BASE_URL at a running edge.`,
      );
    }
    const why =
      code ?? (err instanceof Error ? (err.cause as Error | undefined)?.message || err.message : String(err));
    return new CliError(`cannot reach Ladder at ${this.opts.baseUrl} (${why})`);
  }
}

/** The code of a fetch failure's cause (undici wraps it; a dual-stack connect wraps several). */
function errorCode(err: unknown): string | null {
  const cause = (err as { cause?: { code?: string; errors?: { code?: string }[] } } | null)?.cause;
  return cause?.code ?? cause?.errors?.[0]?.code ?? null;
}

async function apiError(res: Response): Promise<ApiRequestError> {
  const text = await res.text().catch(() => '');
  const error = parseApiError(text);
  if (error) return new ApiRequestError(res.status, error.message, error.code ?? error.type);
  const snippet = text.trim().slice(0, 200) || res.statusText;
  return new ApiRequestError(
    res.status,
    `HTTP ${res.status}${snippet ? `: ${snippet}` : ''}`,
    `http_${res.status}`,
  );
}
