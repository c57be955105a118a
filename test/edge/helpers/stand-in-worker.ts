import { SELF } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import {
  type AdapterManifest,
  deriveWorkerSecret,
  GenerateRequest,
  type GenerateResponse,
  type Heartbeat,
  type JobEvent,
  PurgeRequest,
  StartJobRequest,
  signRequest,
  verifyRequest,
  WORKER_HEADER,
} from '@ladder/schemas';
import { vi } from 'vitest';

/**
 * A STAND-IN for a GPU worker (the real one is gpu-worker/, exercised end to end elsewhere). It
 * speaks the real internal protocol: it verifies the edge's HMAC signatures, parses
 * StartJobRequest / GenerateRequest with the shared schemas, answers StartJobResponse /
 * GenerateResponse / GenerateChunk SSE, and sends signed heartbeats and JobEvents back through
 * the edge's own routes. `down = true` makes it refuse connections like a dead process.
 */
export class StandInWorker {
  readonly url: string;
  down = false;
  readonly jobs: StartJobRequest[] = [];
  readonly generations: GenerateRequest[] = [];
  readonly rejectedSignatures: string[] = [];
  /** Signed `POST /internal/v1/purge` requests it received (each acknowledged). */
  readonly purges: PurgeRequest[] = [];
  /** Signed `POST /internal/v1/jobs/{id}/cancel | pause` calls it received. */
  readonly controls: { job_id: string; action: string }[] = [];
  /** Answers every generation with this status and OpenAI-shaped error, as the real worker refuses. */
  refuseGenerations: { status: number; code: string; message: string } | null = null;
  /**
   * A non-streamed generation answers its headers at once and its body this much later (a long
   * generation); like a real connection, the body errors if the edge aborts the request.
   */
  bodyDelayMs = 0;
  /** A streamed generation emits a token this often until it is cancelled (a long stream). */
  streamEveryMs = 0;
  /** Tokens generated per streamed request id; what a real worker counts. */
  readonly generated = new Map<string, number>();
  private readonly stopStream = new Map<string, () => void>();

  constructor(
    readonly id: string,
    readonly backbone = 'ladder-tiny',
  ) {
    this.url = `http://${id}.stand-in.test:9000`;
  }

  async handle(req: Request): Promise<Response> {
    if (this.down) throw new TypeError(`fetch failed: connect ECONNREFUSED (stand-in ${this.id} is down)`);
    const path = new URL(req.url).pathname;
    const body = await req.text();
    // Signed with this worker's own secret and addressed to it, as the real worker checks.
    const secret = await deriveWorkerSecret(env.WORKER_SIGNING_SECRET, this.id);
    const v = await verifyRequest(secret, req.method, path, body, req.headers);
    if (v.ok && req.headers.get(WORKER_HEADER) !== this.id) {
      this.rejectedSignatures.push(`addressed to ${req.headers.get(WORKER_HEADER)}`);
      return Response.json(
        { error: { message: 'wrong worker', type: 'auth', param: null, code: 'wrong_worker' } },
        { status: 401 },
      );
    }
    if (!v.ok) {
      this.rejectedSignatures.push(v.reason);
      return Response.json(
        { error: { message: v.reason, type: 'auth', param: null, code: 'bad_signature' } },
        { status: 401 },
      );
    }
    if (path === '/internal/v1/jobs') {
      const start = StartJobRequest.parse(JSON.parse(body));
      this.jobs.push(start);
      return Response.json({
        job_id: start.job_id,
        status: 'running',
        resumed_from_step: start.attempt > 1 ? 5 : 0,
      });
    }
    const control = path.match(/^\/internal\/v1\/jobs\/([^/]+)\/(cancel|pause)$/);
    if (control) {
      const jobId = decodeURIComponent(control[1]!);
      this.controls.push({ job_id: jobId, action: control[2]! });
      const known = this.jobs.some((j) => j.job_id === jobId);
      return known
        ? Response.json({ job_id: jobId, status: control[2] === 'cancel' ? 'cancelled' : 'running' })
        : Response.json(
            {
              error: {
                message: 'no such job',
                type: 'invalid_request_error',
                param: null,
                code: 'job_not_found',
              },
            },
            { status: 404 },
          );
    }
    if (path === '/internal/v1/purge') {
      const purge = PurgeRequest.parse(JSON.parse(body));
      this.purges.push(purge);
      return Response.json({
        job_id: purge.job_id,
        adapter_versions: purge.adapter ? 1 : 0,
        checkpoints: purge.adapter !== undefined,
        datasets: true,
      });
    }
    const cancelGen = path.match(/^\/internal\/v1\/generate\/([^/]+)\/cancel$/);
    if (cancelGen) {
      const id = decodeURIComponent(cancelGen[1]!);
      this.controls.push({ job_id: id, action: 'cancel_generation' });
      this.stopStream.get(id)?.();
      return Response.json({ request_id: id, cancelled: this.generated.has(id) });
    }
    if (path === '/internal/v1/generate') {
      const gen = GenerateRequest.parse(JSON.parse(body));
      this.generations.push(gen);
      if (this.refuseGenerations) {
        const { status, code, message } = this.refuseGenerations;
        const type = status >= 500 ? 'server_error' : 'invalid_request_error';
        return Response.json({ error: { message, type, param: null, code } }, { status });
      }
      const words = ['hello', ' from', ` ${this.id}`];
      const usage = { prompt_tokens: 7, completion_tokens: words.length };
      if (gen.stream && this.streamEveryMs) return this.longStream(gen, req.signal);
      if (!gen.stream && this.bodyDelayMs) {
        const out: GenerateResponse = {
          request_id: gen.request_id,
          text: words.join(''),
          finish_reason: 'stop',
          usage,
        };
        const delay = this.bodyDelayMs;
        const body = new ReadableStream<Uint8Array>({
          start(ctrl) {
            const timer = setTimeout(() => {
              ctrl.enqueue(new TextEncoder().encode(JSON.stringify(out)));
              ctrl.close();
            }, delay);
            req.signal.addEventListener('abort', () => {
              clearTimeout(timer);
              ctrl.error(req.signal.reason);
            });
          },
        });
        return new Response(body, { headers: { 'content-type': 'application/json' } });
      }
      if (!gen.stream) {
        const out: GenerateResponse = {
          request_id: gen.request_id,
          text: words.join(''),
          finish_reason: 'stop',
          usage,
        };
        return Response.json(out);
      }
      const events = words.map((delta, i) =>
        JSON.stringify({
          request_id: gen.request_id,
          delta,
          finish_reason: i === words.length - 1 ? 'stop' : null,
          ...(i === words.length - 1 ? { usage } : {}),
        }),
      );
      const sse = `${events.map((e) => `data: ${e}\n\n`).join('')}data: [DONE]\n\n`;
      return new Response(sse, { headers: { 'content-type': 'text/event-stream' } });
    }
    return new Response('not found', { status: 404 });
  }

  /** Tokens until cancelled (the cancel route: a final chunk with the exact usage) or hung up on (none). */
  private longStream(gen: GenerateRequest, signal: AbortSignal): Response {
    const enc = new TextEncoder();
    const id = gen.request_id;
    this.generated.set(id, 0);
    const every = this.streamEveryMs;
    let timer: ReturnType<typeof setInterval> | undefined;
    const body = new ReadableStream<Uint8Array>({
      start: (ctrl) => {
        const send = (x: object) => ctrl.enqueue(enc.encode(`data: ${JSON.stringify(x)}\n\n`));
        timer = setInterval(() => {
          this.generated.set(id, this.generated.get(id)! + 1);
          send({ request_id: id, delta: ' tok', finish_reason: null });
        }, every);
        this.stopStream.set(id, () => {
          clearInterval(timer);
          this.stopStream.delete(id);
          send({
            request_id: id,
            delta: '',
            finish_reason: 'cancelled',
            usage: { prompt_tokens: 7, completion_tokens: this.generated.get(id)! },
          });
          ctrl.enqueue(enc.encode('data: [DONE]\n\n'));
          ctrl.close();
        });
        signal.addEventListener('abort', () => clearInterval(timer));
      },
      cancel: () => {
        clearInterval(timer);
        this.stopStream.delete(id);
      },
    });
    return new Response(body, { headers: { 'content-type': 'text/event-stream' } });
  }

  async heartbeat(loaded: string[] = []): Promise<Response> {
    const hb: Heartbeat = {
      worker_id: this.id,
      url: this.url,
      backbone: { name: this.backbone, fingerprint: 'a'.repeat(64) },
      capacity: { queue_depth: 0, max_queue: 8, running_jobs: this.jobs.length },
      loaded_adapters: loaded,
    };
    return signedPost('/internal/v1/workers/heartbeat', hb, { workerId: this.id });
  }

  /** A signed JobEvent to the callback URL the edge gave this worker. */
  async sendEvent(start: StartJobRequest, event: Partial<JobEvent> & Pick<JobEvent, 'event_id' | 'type'>) {
    const full = {
      job_id: start.job_id,
      tenant: start.tenant,
      created_at: new Date().toISOString(),
      ...event,
    };
    return signedPost(new URL(start.callback_url).pathname, full, { workerId: this.id });
  }
}

/**
 * A callback as worker `workerId` signs it: with its own secret (derived from the edge's master)
 * unless `secret` says otherwise, at `timestamp` (default now).
 */
export async function signedPost(
  path: string,
  body: unknown,
  opts: { workerId: string; secret?: string; timestamp?: number },
): Promise<Response> {
  const text = JSON.stringify(body);
  const secret = opts.secret ?? (await deriveWorkerSecret(env.WORKER_SIGNING_SECRET, opts.workerId));
  const headers = await signRequest(secret, 'POST', path, text, opts.timestamp);
  return SELF.fetch(`https://edge.test${path}`, {
    method: 'POST',
    body: text,
    headers: { ...headers, [WORKER_HEADER]: opts.workerId, 'content-type': 'application/json' },
  });
}

/** Routes the edge's outbound fetches to the stand-ins by host; anything else is unreachable. */
export function interceptWorkers(...workers: StandInWorker[]) {
  const byHost = new Map(workers.map((w) => [new URL(w.url).host, w]));
  return vi.spyOn(globalThis, 'fetch').mockImplementation(async (input, init) => {
    const req = new Request(input as RequestInfo, init);
    const w = byHost.get(new URL(req.url).host);
    if (!w) throw new TypeError(`fetch failed: no route to ${req.url}`);
    return w.handle(req);
  });
}

export function manifestFor(start: StartJobRequest, adapterId = `adp-${start.job_id}`): AdapterManifest {
  return {
    format: 'ladder.adapter',
    format_version: 1,
    adapter_id: adapterId,
    tenant: start.tenant,
    name: start.suffix ?? 'adapter',
    version: 1,
    created_at: new Date().toISOString(),
    backbone: { name: 'ladder-tiny', fingerprint: 'a'.repeat(64) },
    side_net: {
      reduction_factor: 8,
      taps: [1, 2],
      free: 0,
      gate: 'vector',
      init: 'random',
      side_heads: 2,
      dropout: 0,
    },
    tensors: [{ name: 'up.weight', dtype: 'F32', shape: [4, 4] }],
    weights: { format: 'safetensors', sha256: 'b'.repeat(64), size_bytes: 64 },
    training: {
      job_id: start.job_id,
      steps: 10,
      tokens: 1234,
      final_losses: { train: 0.5, validation: null },
    },
  };
}
