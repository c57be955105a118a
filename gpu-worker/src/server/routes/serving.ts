import type { Lease } from '@ladder/adapters';
import {
  type AdapterRef,
  GenerateChunk,
  GenerateRequest,
  GenerateResponse,
  ScoreRequest,
  ScoreResponse,
} from '@ladder/schemas';
import type { Hono } from 'hono';
import { streamSSE } from 'hono/streaming';
import {
  acquireAdapter,
  generationJob,
  type ReadyAdapter,
  type Serving,
  scoreWithAdapters,
} from '../../serving/index.ts';
import { HttpError, parseBody } from '../errors.ts';

async function leaseFor(serving: Serving, tenant: string, ref: AdapterRef | null) {
  if (!ref) return null;
  if (ref.tenant !== tenant) {
    throw new HttpError(403, `adapter ${ref.adapter_id} belongs to another tenant`, 'adapter_forbidden');
  }
  return acquireAdapter(serving.cache, ref);
}

/** Text deltas handed from the scheduler to an SSE writer. */
class DeltaChannel {
  private readonly items: string[] = [];
  private notify: (() => void) | undefined;
  closed = false;
  push(d: string): void {
    this.items.push(d);
    this.notify?.();
  }
  close(): void {
    this.closed = true;
    this.notify?.();
  }
  /** What arrived since the last call; waits unless there is some or the channel is closed. */
  async next(): Promise<string[]> {
    if (!this.items.length && !this.closed) await new Promise<void>((r) => (this.notify = r));
    this.notify = undefined;
    return this.items.splice(0);
  }
}

/**
 * POST /internal/v1/generate (and .../{request_id}/cancel: the edge's client hung up; the
 * generation stops and its stream ends with the exact usage), /score, GET /internal/v1/adapters.
 */
export function servingRoutes(app: Hono, serving: () => Serving) {
  const live = new Map<string, AbortController>();
  app.post('/internal/v1/generate/:request_id/cancel', (c) => {
    const id = c.req.param('request_id');
    const found = live.get(id);
    found?.abort();
    return c.json({ request_id: id, cancelled: found !== undefined });
  });

  app.post('/internal/v1/generate', async (c) => {
    const req = await parseBody(c, GenerateRequest);
    const s = serving();
    const lease = await leaseFor(s, req.tenant, req.adapter);
    const cancel = new AbortController();
    const gone = () => cancel.abort();
    c.req.raw.signal.addEventListener('abort', gone, { once: true });
    live.set(req.request_id, cancel);
    const channel = new DeltaChannel();
    let outcome: ReturnType<Serving['scheduler']['submit']>;
    try {
      const job = generationJob(s.model, req, lease, {
        signal: cancel.signal,
        onDelta: req.stream ? (d) => channel.push(d) : undefined,
      });
      outcome = s.scheduler.submit(job); // throws at once when the queue is full
    } catch (e) {
      live.delete(req.request_id);
      lease?.release();
      throw e;
    }
    void outcome.finally(() => live.delete(req.request_id)).catch(() => {});
    if (!req.stream) {
      // Headers (and a byte of JSON whitespace) go out as soon as the request is queued: the edge's
      // timeout covers the wait for them, not the generation. A failure after that is the body.
      const enc = new TextEncoder();
      const body = new ReadableStream<Uint8Array>({
        async start(ctrl) {
          ctrl.enqueue(enc.encode(' '));
          try {
            const o = await outcome;
            const res = GenerateResponse.parse({
              request_id: req.request_id,
              text: o.text,
              finish_reason: o.finishReason,
              usage: { prompt_tokens: o.promptTokens, completion_tokens: o.tokens.length },
            });
            ctrl.enqueue(enc.encode(JSON.stringify(res)));
          } catch (e) {
            const error = {
              message: (e as Error).message,
              type: 'server_error',
              param: null,
              code: 'generation_failed',
            };
            ctrl.enqueue(enc.encode(JSON.stringify({ error })));
          }
          ctrl.close();
        },
      });
      return new Response(body, { headers: { 'content-type': 'application/json' } });
    }
    const ended = outcome.finally(() => channel.close());
    ended.catch(() => {}); // reported in the stream, or nobody is listening any more
    return streamSSE(c, async (stream) => {
      stream.onAbort(gone);
      const chunk = (x: GenerateChunk) => stream.writeSSE({ data: JSON.stringify(GenerateChunk.parse(x)) });
      while (!channel.closed) {
        for (const delta of await channel.next()) {
          await chunk({ request_id: req.request_id, delta, finish_reason: null });
        }
      }
      try {
        const o = await ended;
        for (const delta of await channel.next()) {
          await chunk({ request_id: req.request_id, delta, finish_reason: null });
        }
        await chunk({
          request_id: req.request_id,
          delta: '',
          finish_reason: o.finishReason,
          usage: { prompt_tokens: o.promptTokens, completion_tokens: o.tokens.length },
        });
      } catch (e) {
        await stream.writeSSE({ event: 'error', data: JSON.stringify({ message: (e as Error).message }) });
      }
    });
  });

  app.post('/internal/v1/score', async (c) => {
    const req = await parseBody(c, ScoreRequest);
    const s = serving();
    const leases: (Lease<ReadyAdapter> | null)[] = [];
    try {
      for (const ref of req.adapters) leases.push(await leaseFor(s, req.tenant, ref));
      return c.json(ScoreResponse.parse(await scoreWithAdapters(s.model, s.gate, req, leases)));
    } finally {
      for (const l of leases) l?.release();
    }
  });

  app.get('/internal/v1/adapters', (c) => {
    const s = serving();
    return c.json({ loaded: s.loadedAdapters(), cache: s.cache.stats() });
  });
}
