import {
  type AdapterRef,
  type ChatCompletionRequest,
  type CompletionRequest,
  GenerateChunk,
  GenerateRequest,
  GenerateResponse,
  type Prompt,
  parseApiError,
  type Usage,
} from '@ladder/schemas';
import { meter } from '../durable-objects/tenant-meter.ts';
import { registry, type WorkerInfo } from '../durable-objects/worker-registry.ts';
import { config } from '../lib/config.ts';
import { ApiException } from '../lib/errors.ts';
import { newId } from '../lib/ids.ts';
import { rendezvousOrder, withFailover } from '../lib/routing.ts';
import type { TenantContext } from '../lib/types.ts';
import { signedFetch } from '../lib/worker-client.ts';
import { findAdapter } from '../store/adapters.ts';

export type CompletionKind = 'chat' | 'text';

interface Resolved {
  adapter: AdapterRef | null;
  backbone: string;
  /** What rendezvous hashing places: the adapter id (or the backbone for plain requests). */
  routingKey: string;
}

/** `model` names a backbone, or one of the tenant's adapters; anything else is a 404. */
export async function resolveModel(env: Env, tenant: string, model: string): Promise<Resolved> {
  if (config(env).backbones.includes(model))
    return { adapter: null, backbone: model, routingKey: `backbone:${model}` };
  const row = model.startsWith('ft:') ? await findAdapter(env, tenant, model) : null;
  if (!row) {
    throw new ApiException(
      404,
      `The model '${model}' does not exist or you do not have access to it.`,
      'invalid_request_error',
      'model_not_found',
      'model',
    );
  }
  return {
    adapter: { tenant, adapter_id: row.id, version: row.version, sha256: row.sha256 },
    backbone: row.backbone,
    routingKey: row.id,
  };
}

const finishReason = (r: GenerateResponse['finish_reason']) => (r === 'length' ? 'length' : 'stop');

const usageObject = (u: Usage) => ({ ...u, total_tokens: u.prompt_tokens + u.completion_tokens });

/** What a request may spend before the worker has counted it: its prompt (about 4 characters a token) and max_tokens. */
function tokenEstimate(gen: GenerateRequest): number {
  const chars =
    'text' in gen.prompt
      ? gen.prompt.text.length
      : gen.prompt.messages.reduce((n, m) => n + m.content.length, 0);
  return Math.ceil(chars / 4) + gen.sampling.max_tokens;
}

/** How long the edge waits, after a client hung up, for the worker's final count of what it generated. */
const ABORT_SETTLE_MS = 10_000;

/**
 * One completion, chat or text: resolve the adapter, reserve its tokens in the tenant's meter,
 * sign a GenerateRequest, send it to the healthy workers of its backbone in rendezvous order
 * (failing over on connection errors and timeouts before a worker took it, never after), answer
 * in OpenAI's shape (JSON, or SSE chunks for `stream: true`) and meter the usage once under the
 * request id. A client that hangs up on a stream is still billed for what the worker generated:
 * the edge asks the worker to stop and reads its final count.
 */
export async function complete(
  env: Env,
  tenant: TenantContext,
  kind: CompletionKind,
  body: ChatCompletionRequest | CompletionRequest,
  ctx?: Pick<ExecutionContext, 'waitUntil'>,
): Promise<Response> {
  const resolved = await resolveModel(env, tenant.id, body.model);
  const requestId = newId(kind === 'chat' ? 'chatcmpl' : 'cmpl');
  const prompt: Prompt = 'messages' in body ? { messages: body.messages } : { text: body.prompt };
  const stop = body.stop == null ? undefined : typeof body.stop === 'string' ? [body.stop] : body.stop;
  const gen = GenerateRequest.parse({
    request_id: requestId,
    tenant: tenant.id,
    adapter: resolved.adapter,
    prompt,
    sampling: {
      max_tokens: body.max_completion_tokens ?? body.max_tokens,
      temperature: body.temperature,
      top_p: body.top_p,
      seed: body.seed,
      stop,
    },
    stream: body.stream,
  });
  const started = Date.now();
  const tenantMeter = meter(env, tenant.id);
  const reserved = await tenantMeter.reserve(requestId, tenant.limits, started, tokenEstimate(gen));
  if (!reserved.ok) {
    const retryAfter = String(reserved.resetS);
    throw new ApiException(
      429,
      `Rate limit reached for tokens per minute: limit ${reserved.limit}. Retry in ${retryAfter}s.`,
      'tokens',
      'rate_limit_exceeded',
      null,
      { 'retry-after': retryAfter, 'x-ratelimit-remaining-tokens': '0' },
    );
  }
  let res: Response;
  let worker: WorkerInfo;
  try {
    const workers = (await registry(env).healthy(started)).filter((w) => w.backbone === resolved.backbone);
    ({ res, worker } = await withFailover(rendezvousOrder(resolved.routingKey, workers), (w) =>
      signedFetch(env, w.worker_id, `${w.url}/internal/v1/generate`, gen),
    ));
    if (!res.ok) throw await workerFailure(res, worker.worker_id, kind);
  } catch (err) {
    await tenantMeter.release(requestId);
    throw err;
  }
  const recordUsage = (u: Usage) =>
    tenantMeter.record({
      id: requestId,
      kind: 'inference',
      model: body.model,
      backbone: resolved.backbone,
      ts: started,
      prompt_tokens: u.prompt_tokens,
      completion_tokens: u.completion_tokens,
      training_tokens: 0,
    });
  const headers = { 'x-ladder-worker': worker.worker_id, 'x-request-id': requestId };
  const created = Math.floor(started / 1000);

  if (!body.stream) {
    // The worker took the request (its headers came): no failover from here, whatever the wait.
    const answer = await res.json().catch((err: Error) => ({ error: { message: err.message } }));
    const failed = (answer as { error?: { message?: string } }).error;
    if (failed) {
      throw new ApiException(
        502,
        `Worker ${worker.worker_id} failed the request: ${String(failed.message).slice(0, 500)}`,
        'server_error',
        'worker_error',
      );
    }
    const out = GenerateResponse.parse(answer);
    await recordUsage(out.usage);
    const choice =
      kind === 'chat'
        ? {
            index: 0,
            message: { role: 'assistant' as const, content: out.text },
            finish_reason: finishReason(out.finish_reason),
          }
        : { index: 0, text: out.text, finish_reason: finishReason(out.finish_reason) };
    return Response.json(
      {
        id: requestId,
        object: kind === 'chat' ? 'chat.completion' : 'text_completion',
        created,
        model: body.model,
        choices: [choice],
        usage: usageObject(out.usage),
      },
      { headers },
    );
  }

  const object = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
  const chunk = (delta: string | null, finish: string | null, usage?: Usage) => ({
    id: requestId,
    object,
    created,
    model: body.model,
    choices:
      delta === null && finish === null
        ? []
        : [
            kind === 'chat'
              ? { index: 0, delta: delta === null ? {} : { content: delta }, finish_reason: finish }
              : { index: 0, text: delta ?? '', finish_reason: finish },
          ],
    ...(usage ? { usage: usageObject(usage) } : {}),
  });
  const enc = new TextEncoder();
  const sse = (data: unknown) =>
    enc.encode(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
  const upstream = res.body!.pipeThrough(new TextDecoderStream()).pipeThrough(sseEvents()).getReader();
  let usage: Usage | undefined;
  let finished = false;
  /** The worker's next chunk (null at the end of its stream), its usage noted. */
  const nextChunk = async (): Promise<GenerateChunk | null> => {
    for (;;) {
      const { value, done } = await upstream.read();
      if (done) return null;
      const data = sseData(value);
      if (data === null || data === '[DONE]') continue;
      const c = GenerateChunk.parse(JSON.parse(data));
      if (c.usage) usage = c.usage;
      if (c.finish_reason) finished = true;
      return c;
    }
  };
  /** The client hung up: the worker stops, and its final chunk says what it generated. */
  const settleAbort = async () => {
    const cancelUrl = `${worker.url}/internal/v1/generate/${encodeURIComponent(requestId)}/cancel`;
    const told = signedFetch(env, worker.worker_id, cancelUrl, {}).then(
      (r) => r.body?.cancel(),
      (err: Error) => console.warn(`edge: could not cancel ${requestId}: ${err.message}`),
    );
    const deadline = new Promise<null>((r) => setTimeout(() => r(null), ABORT_SETTLE_MS));
    try {
      while (!finished && (await Promise.race([nextChunk(), deadline]))) {}
    } catch {
      // The worker's stream broke: bill what it reported last.
    }
    await told;
    await upstream.cancel().catch(() => {});
    if (usage) await recordUsage(usage);
    else console.warn(`edge: stream ${requestId} aborted before the worker reported usage`);
  };
  // The relay writes into a pipe the runtime reads to the client; a client that hung up makes
  // the write fail (workerd does not cancel a source stream then), which starts the settlement.
  const pipe = new TransformStream<Uint8Array, Uint8Array>();
  const out = pipe.writable.getWriter();
  const relayAll = async () => {
    try {
      if (kind === 'chat')
        await out.write(
          sse({
            ...chunk(null, null),
            choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }],
          }),
        );
      for (let c = await nextChunk(); c; c = await nextChunk()) {
        if (c.delta) await out.write(sse(chunk(c.delta, null)));
        if (c.finish_reason) await out.write(sse(chunk(null, finishReason(c.finish_reason))));
      }
    } catch {
      return settleAbort();
    }
    if (usage) await recordUsage(usage);
    try {
      if (!usage || !finished) {
        await out.write(
          sse({
            error: {
              message: 'The worker ended the stream early.',
              type: 'server_error',
              param: null,
              code: 'worker_error',
            },
          }),
        );
      } else {
        // Every response carries usage: the last chunk has no choices and the totals.
        await out.write(sse(chunk(null, null, usage)));
        await out.write(sse('[DONE]'));
      }
      await out.close();
    } catch {
      // The client left after the last token: it is billed already.
    }
  };
  const relaying = relayAll();
  ctx?.waitUntil(relaying);
  const relay = pipe.readable;
  return new Response(relay, {
    headers: { ...headers, 'content-type': 'text/event-stream', 'cache-control': 'no-cache' },
  });
}

/**
 * A worker's refusal as the client's answer. A 400 is the request's own fault (a prompt over the
 * context: `context_length_exceeded`) and stays a 400 with the worker's code, so that OpenAI
 * clients, which retry 5xx, do not send it again; anything else is the platform's, a 502.
 */
async function workerFailure(res: Response, workerId: string, kind: CompletionKind): Promise<ApiException> {
  const text = await res.text();
  const error = res.status === 400 ? parseApiError(text) : null;
  if (error) {
    const { message, code, param } = error;
    const promptParam = code === 'context_length_exceeded' ? (kind === 'chat' ? 'messages' : 'prompt') : null;
    return new ApiException(400, message, 'invalid_request_error', code, param ?? promptParam);
  }
  return new ApiException(
    502,
    `Worker ${workerId} failed the request (${res.status}): ${text.slice(0, 500)}`,
    'server_error',
    'worker_error',
  );
}

/** Splits a text stream into server-sent events (blank-line separated). */
function sseEvents(): TransformStream<string, string> {
  let buffer = '';
  return new TransformStream({
    transform(text, ctrl) {
      buffer += text.replace(/\r\n/g, '\n');
      for (let i = buffer.indexOf('\n\n'); i >= 0; i = buffer.indexOf('\n\n')) {
        ctrl.enqueue(buffer.slice(0, i));
        buffer = buffer.slice(i + 2);
      }
    },
    flush(ctrl) {
      if (buffer.trim()) ctrl.enqueue(buffer);
    },
  });
}

function sseData(event: string): string | null {
  const lines = event.split('\n').filter((l) => l.startsWith('data:'));
  return lines.length ? lines.map((l) => l.slice(5).replace(/^ /, '')).join('\n') : null;
}
