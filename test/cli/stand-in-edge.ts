import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  ApiKey,
  apiError,
  ChatCompletion,
  ChatCompletionRequest,
  CreateTenantRequest,
  DatasetValidator,
  echoMethod,
  FileObject,
  FineTuningJob,
  FineTuningJobEvent,
  formatDatasetError,
  jobHyperparameters,
  ModelObject,
  parseFineTuningJobRequest,
  Tenant,
  UsageReport,
} from '@ladder/schemas';

export const STAND_IN_KEY = 'sk-stand-in-tenant';
export const STAND_IN_ADMIN_TOKEN = 'stand-in-admin-token';
export const BACKBONE = 'ladder-tiny';

/** How a job's event stream unfolds: its events (ids and times are filled in) and how it ends. */
export interface JobScript {
  events: {
    type: 'message' | 'metrics';
    message: string;
    level?: 'info' | 'warn' | 'error';
    data?: Record<string, unknown>;
  }[];
  end:
    | { status: 'succeeded'; trained_tokens: number }
    | { status: 'failed'; error: { code: string; message: string } }
    | { status: 'cancelled' };
}

export interface RecordedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: Headers;
  body: string;
}

/** A training run of `steps` steps: created, started, progress every step, a checkpoint, the end. */
export function trainingScript(
  steps: number,
  end: JobScript['end'] = { status: 'succeeded', trained_tokens: 4096 },
) {
  const progress = Array.from({ length: steps }, (_, i) => ({
    type: 'metrics' as const,
    message: `Step ${i + 1}/${steps}: training loss=${2 - i * 0.25}`,
    data: {
      step: i + 1,
      total_steps: steps,
      epoch: (i + 1) / steps,
      train_loss: 2 - i * 0.25,
      valid_loss: null,
      learning_rate: 0.001,
      tokens_per_s: 1500 + i,
      eta_s: (steps - i - 1) * 3,
    },
  }));
  const last =
    end.status === 'succeeded'
      ? { type: 'message' as const, message: 'The job has successfully completed' }
      : end.status === 'failed'
        ? { type: 'message' as const, message: end.error.message, level: 'error' as const }
        : { type: 'message' as const, message: 'Fine-tuning job cancelled' };
  return {
    events: [
      { type: 'message', message: 'Created fine-tuning job' },
      { type: 'message', message: 'Fine-tuning job started' },
      ...progress.slice(0, Math.ceil(steps / 2)),
      {
        type: 'message',
        message: `Checkpoint created at step ${Math.ceil(steps / 2)}`,
        data: { step: Math.ceil(steps / 2) },
      },
      ...progress.slice(Math.ceil(steps / 2)),
      last,
    ],
    end,
  } satisfies JobScript;
}

/**
 * A STAND-IN for the edge's public and admin API (the real one is edge/, tested in the Workers
 * runtime). A real HTTP server on 127.0.0.1 that answers in the shapes of schemas/src/public-api.ts
 * (every answer is parsed with the shared schema before it leaves), including the job-events and
 * chat-completion SSE streams, and records every request it gets.
 */
export class StandInEdge {
  readonly requests: RecordedRequest[] = [];
  readonly files: FileObject[] = [];
  readonly jobs = new Map<string, FineTuningJob>();
  readonly adapters: ModelObject[] = [];
  /** What each new job's event stream delivers. */
  script: JobScript = trainingScript(4);
  /** Events sent per SSE connection before the stream is closed early (the edge does after 5 minutes). */
  eventsPerStream = Number.POSITIVE_INFINITY;
  /** The next event stream is cut (socket destroyed) after its first event, like a dropped connection. */
  cutNextStream = false;
  /** Refuse every upload with this invalid_file message, whatever the file holds. */
  uploadRefusal: string | null = null;
  /** The assistant's answer to a conversation. */
  reply = (messages: { role: string; content: string }[]) => `You said: ${messages.at(-1)!.content}`;
  /** Chat streams fail with this error event after the first chunk. */
  chatStreamError: string | null = null;
  usage: UsageReport = UsageReport.parse({
    object: 'usage',
    tenant: 'tenant-1',
    data: [],
    total_cost_usd: 0,
  });

  private readonly scripts = new Map<string, JobScript>();
  private readonly delivered = new Map<string, number>();
  private seq = 0;

  private constructor(private readonly server: Server) {}

  static async start(): Promise<StandInEdge> {
    const server = createServer();
    const edge = new StandInEdge(server);
    server.on('request', (req, res) => void edge.serve(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return edge;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  requestsTo(method: string, path: string): RecordedRequest[] {
    return this.requests.filter((r) => r.method === method && r.path === path);
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const url = new URL(req.url ?? '/', this.url);
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers))
      if (typeof value === 'string') headers.set(name, value);
    this.requests.push({
      method: req.method ?? 'GET',
      path: url.pathname,
      query: url.searchParams,
      headers,
      body: body.toString('utf8'),
    });
    let answer: Response;
    try {
      answer = await this.route(req.method ?? 'GET', url, headers, body);
    } catch (err) {
      answer = fail(500, `stand-in: ${(err as Error).message}`, 'server_error');
    }
    const cut = answer.headers.get('x-stand-in') === 'cut';
    res.writeHead(answer.status, Object.fromEntries(answer.headers));
    if (answer.body) for await (const chunk of answer.body) res.write(chunk);
    // A cut stream: the socket closes once the written events are flushed, without the final chunk.
    if (cut) res.write('', () => res.destroy());
    else res.end();
  }

  private async route(method: string, url: URL, headers: Headers, body: Buffer): Promise<Response> {
    const path = url.pathname;
    const bearer = headers.get('authorization')?.replace(/^Bearer /, '');
    if (path.startsWith('/admin/')) {
      if (bearer !== STAND_IN_ADMIN_TOKEN)
        return fail(401, 'Admin routes need "Authorization: Bearer <admin token>".', 'invalid_api_key');
      return this.admin(method, path, body);
    }
    if (bearer !== STAND_IN_KEY) return fail(401, 'Incorrect or revoked API key.', 'invalid_api_key');
    const text = body.toString('utf8');
    if (method === 'POST' && path === '/v1/files') return this.upload(headers, body);
    if (method === 'GET' && path === '/v1/files') return list(this.files.toReversed(), FileObject);
    if (method === 'GET' && path === '/v1/models') return list(this.models(), ModelObject);
    const model = /^\/v1\/models\/([^/]+)$/.exec(path);
    if (model) return this.model(method, decodeURIComponent(model[1]!));
    if (method === 'POST' && path === '/v1/fine_tuning/jobs') return this.createJob(headers, text);
    if (method === 'GET' && path === '/v1/fine_tuning/jobs')
      return list([...this.jobs.values()].toReversed(), FineTuningJob);
    const m = /^\/v1\/fine_tuning\/jobs\/([^/]+)(\/cancel|\/pause|\/resume|\/events)?$/.exec(path);
    if (m) {
      const job = this.jobs.get(m[1]!);
      if (!job) return fail(404, `No fine_tuning_job found with id '${m[1]}'`, 'fine_tuning_job_not_found');
      if (method === 'GET' && !m[2]) return Response.json(FineTuningJob.parse(job));
      const control = m[2]?.match(/^\/(cancel|pause|resume)$/);
      if (method === 'POST' && control) return this.control(job, control[1]!);
      if (method === 'GET' && m[2] === '/events') return this.events(job, url.searchParams);
    }
    if (method === 'POST' && path === '/v1/chat/completions') return this.chat(text);
    if (method === 'GET' && path === '/v1/usage') return Response.json(UsageReport.parse(this.usage));
    return fail(404, `no route for ${method} ${path}`, 'not_found');
  }

  private async upload(headers: Headers, body: Buffer): Promise<Response> {
    const form = await new Response(body, {
      headers: { 'content-type': headers.get('content-type') ?? '' },
    }).formData();
    const file = form.get('file');
    if (!(file instanceof File)) return fail(400, 'Missing the multipart field "file".', 'invalid_request');
    if (form.get('purpose') !== 'fine-tune')
      return fail(400, 'purpose must be "fine-tune".', 'invalid_request');
    if (this.uploadRefusal) return fail(400, this.uploadRefusal, 'invalid_file');
    const text = await file.text();
    const validator = new DatasetValidator({ keepLines: false, maxErrors: 10 });
    validator.write(text);
    const v = validator.end();
    if (!v.ok) {
      const lines = v.errors.map(formatDatasetError).join('; ');
      return fail(
        400,
        `Invalid training file: ${v.invalidLineCount} invalid line(s) of ${v.lineCount}. ${lines}`,
        'invalid_file',
      );
    }
    const object = FileObject.parse({
      id: `file-${++this.seq}`,
      object: 'file',
      bytes: file.size,
      created_at: 1_750_000_000,
      filename: file.name,
      purpose: 'fine-tune',
      format: v.format,
      line_count: v.lineCount,
      sha256: '0'.repeat(64),
    });
    this.files.push(object);
    return Response.json(object);
  }

  private models(): ModelObject[] {
    const backbone = {
      id: BACKBONE,
      object: 'model',
      created: 0,
      owned_by: 'ladder',
      backbone: BACKBONE,
      kind: 'backbone',
    };
    return [ModelObject.parse(backbone), ...this.adapters];
  }

  private model(method: string, id: string): Response {
    const found = this.models().find((m) => m.id === id);
    if (!found) return fail(404, `No model found with id '${id}'`, 'model_not_found');
    if (method === 'GET') return Response.json(found);
    if (found.kind === 'backbone') return fail(400, 'A backbone cannot be deleted.', 'model_not_deletable');
    this.adapters.splice(this.adapters.indexOf(found), 1);
    return Response.json({ id, object: 'model', deleted: true });
  }

  private createJob(headers: Headers, text: string): Response {
    const parsed = parseFineTuningJobRequest(JSON.parse(text));
    if (!parsed.ok) return fail(400, parsed.refusal.message, parsed.refusal.code);
    const spec = parsed.spec;
    if (!this.files.some((f) => f.id === spec.training_file))
      return fail(404, `No file found with id '${spec.training_file}'`, 'file_not_found');
    if (!headers.get('idempotency-key'))
      return fail(400, 'stand-in: expected an Idempotency-Key', 'invalid_request');
    const job = FineTuningJob.parse({
      id: `ftjob-${++this.seq}`,
      object: 'fine_tuning.job',
      model: spec.model,
      organization_id: 'tenant-1',
      created_at: 1_750_000_000,
      finished_at: null,
      estimated_finish: null,
      fine_tuned_model: null,
      status: 'validating_files',
      training_file: spec.training_file,
      validation_file: spec.validation_file,
      hyperparameters: jobHyperparameters(spec.method, null),
      method: echoMethod(spec.method_type, spec.method, null),
      result_files: [],
      suffix: spec.suffix,
      seed: spec.seed ?? 7,
      metadata: null,
      trained_tokens: null,
      error: null,
      attempt: 1,
    });
    this.jobs.set(job.id, job);
    this.scripts.set(job.id, this.script);
    return Response.json(job);
  }

  private control(job: FineTuningJob, action: string): Response {
    const from: Record<string, [FineTuningJob['status'][], string]> = {
      cancel: [['validating_files', 'queued', 'running', 'paused'], 'job_not_cancellable'],
      pause: [['running'], 'job_not_pausable'],
      resume: [['paused'], 'job_not_resumable'],
    };
    const [statuses, code] = from[action]!;
    if (!statuses.includes(job.status)) return fail(400, `Job ${job.id} has already ${job.status}.`, code);
    const status = { cancel: 'cancelled', pause: 'paused', resume: 'queued' } as const;
    Object.assign(job, { status: status[action as keyof typeof status] });
    if (action === 'cancel') job.finished_at = 1_750_000_100;
    return Response.json(FineTuningJob.parse(job));
  }

  /** The script's events after `after`, at most eventsPerStream of them; the job ends with the last. */
  private events(job: FineTuningJob, query: URLSearchParams): Response {
    const script = this.scripts.get(job.id)!;
    const all = script.events.map((e, i) =>
      FineTuningJobEvent.parse({
        id: `${job.id}-event-${i}`,
        object: 'fine_tuning.job.event',
        created_at: 1_750_000_000 + i,
        level: e.level ?? 'info',
        message: e.message,
        type: e.type,
        data: e.data ?? {},
      }),
    );
    const after = query.get('after');
    const start = after === null ? 0 : all.findIndex((e) => e.id === after) + 1;
    if (this.cutNextStream && query.get('stream') === 'true') {
      this.cutNextStream = false;
      const first = all[start]!;
      const event = `id: ${first.id}\nevent: fine_tuning.job.event\ndata: ${JSON.stringify(first)}\n\n`;
      return sse([event], { 'x-stand-in': 'cut' });
    }
    const batch = all.slice(start, start + this.eventsPerStream);
    const deliveredUpTo = start + batch.length;
    this.delivered.set(job.id, deliveredUpTo);
    if (deliveredUpTo > 0 && (job.status === 'queued' || job.status === 'validating_files'))
      job.status = 'running';
    if (deliveredUpTo === all.length) this.finish(job, script.end);
    if (query.get('stream') !== 'true')
      return Response.json({ object: 'list', data: batch, has_more: deliveredUpTo < all.length });
    return sse([
      ...batch.map((e) => `id: ${e.id}\nevent: fine_tuning.job.event\ndata: ${JSON.stringify(e)}\n\n`),
      'data: [DONE]\n\n',
    ]);
  }

  private finish(job: FineTuningJob, end: JobScript['end']): void {
    Object.assign(job, { status: end.status, finished_at: 1_750_000_100 });
    if (end.status === 'failed') job.error = { ...end.error, param: null };
    if (end.status === 'succeeded') {
      job.fine_tuned_model = `ft:${job.model}:${job.suffix ?? 'adapter'}:adp-${job.id}`;
      job.trained_tokens = end.trained_tokens;
      this.adapters.push(
        ModelObject.parse({
          id: job.fine_tuned_model,
          object: 'model',
          created: 1_750_000_100,
          owned_by: 'tenant-1',
          backbone: job.model,
          kind: 'adapter',
        }),
      );
    }
  }

  /** OpenAI chunks: the role, the answer a word at a time, the finish, a usage-only chunk, [DONE]. */
  private chat(text: string): Response {
    const body = ChatCompletionRequest.parse(JSON.parse(text));
    if (!this.models().some((m) => m.id === body.model))
      return fail(
        404,
        `The model '${body.model}' does not exist or you do not have access to it.`,
        'model_not_found',
      );
    const answer = this.reply(body.messages);
    const usage = { prompt_tokens: 11, completion_tokens: 5, total_tokens: 16 };
    const base = {
      id: 'chatcmpl-1',
      object: 'chat.completion.chunk',
      created: 1_750_000_000,
      model: body.model,
    };
    if (!body.stream) {
      const message = { role: 'assistant', content: answer };
      return Response.json(
        ChatCompletion.parse({
          ...base,
          object: 'chat.completion',
          choices: [{ index: 0, message, finish_reason: 'stop' }],
          usage,
        }),
      );
    }
    const chunk = (delta: object, finish: string | null) => ({
      ...base,
      choices: [{ index: 0, delta, finish_reason: finish }],
    });
    const words = answer.match(/\S+\s*/g) ?? [];
    const data = [
      chunk({ role: 'assistant', content: '' }, null),
      ...words.map((w) => chunk({ content: w }, null)),
      chunk({}, body.max_tokens !== undefined && body.max_tokens < words.length ? 'length' : 'stop'),
      { ...base, choices: [], usage },
    ].map((d) => `data: ${JSON.stringify(d)}\n\n`);
    if (this.chatStreamError) {
      const error = apiError(this.chatStreamError, 'server_error', 'worker_error');
      return sse([data[0]!, data[1]!, `data: ${JSON.stringify(error)}\n\n`]);
    }
    return sse([...data, 'data: [DONE]\n\n']);
  }

  private admin(method: string, path: string, body: Buffer): Response {
    const m = /^\/admin\/v1\/tenants\/([^/]+)\/keys$/.exec(path);
    if (method === 'POST' && path === '/admin/v1/tenants') {
      const request = CreateTenantRequest.parse(JSON.parse(body.toString('utf8')));
      const limits = {
        requests_per_min: 600,
        tokens_per_min: 1_000_000,
        concurrent_jobs: 2,
        max_adapters: 10,
      };
      const tenant = {
        id: `tenant-${++this.seq}`,
        object: 'tenant',
        name: request.name,
        limits,
        created_at: 1_750_000_000,
      };
      return Response.json(Tenant.parse(tenant), { status: 201 });
    }
    if (method === 'POST' && m) {
      const { name = '' } = JSON.parse(body.toString('utf8') || '{}') as { name?: string };
      const key = {
        id: `key-${++this.seq}`,
        object: 'api_key',
        tenant: m[1],
        name,
        prefix: 'sk-new',
        created_at: 1_750_000_000,
        revoked_at: null,
        key: 'sk-new-secret',
      };
      return Response.json(ApiKey.parse(key), { status: 201 });
    }
    return fail(404, `no route for ${method} ${path}`, 'not_found');
  }
}

function fail(status: number, message: string, code: string): Response {
  return Response.json(apiError(message, status >= 500 ? 'server_error' : 'invalid_request_error', code), {
    status,
  });
}

function list<T>(items: T[], schema: { parse(v: unknown): T }): Response {
  return Response.json({ object: 'list', data: items.map((i) => schema.parse(i)), has_more: false });
}

function sse(events: string[], headers: Record<string, string> = {}): Response {
  const body = new ReadableStream<Uint8Array>({
    start(ctrl) {
      for (const e of events) ctrl.enqueue(new TextEncoder().encode(e));
      ctrl.close();
    },
  });
  return new Response(body, {
    headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', ...headers },
  });
}
