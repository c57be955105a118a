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
import { registry } from '../durable-objects/worker-registry.ts';
import { config } from '../lib/config.ts';
import { ApiException } from '../lib/errors.ts';
import { newId } from '../lib/ids.ts';
import { rendezvousOrder, withFailover } from '../lib/routing.ts';
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

/**
 * One completion, chat or text: resolve the adapter, sign a GenerateRequest, send it to the
 * healthy workers of its backbone in rendezvous order (failing over on connection errors and
 * timeouts), answer in OpenAI's shape (JSON, or SSE chunks for `stream: true`) and meter the
 * usage once under the request id.
 */
export async function complete(
  env: Env,
  tenant: string,
  kind: CompletionKind,
  body: ChatCompletionRequest | CompletionRequest,
): Promise<Response> {
  const resolved = await resolveModel(env, tenant, body.model);
  const requestId = newId(kind === 'chat' ? 'chatcmpl' : 'cmpl');
  const prompt: Prompt = 'messages' in body ? { messages: body.messages } : { text: body.prompt };
  const stop = body.stop == null ? undefined : typeof body.stop === 'string' ? [body.stop] : body.stop;
  const gen = GenerateRequest.parse({
    request_id: requestId,
    tenant,
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
  const workers = (await registry(env).healthy(started)).filter((w) => w.backbone === resolved.backbone);
  const { res, worker } = await withFailover(rendezvousOrder(resolved.routingKey, workers), (w) =>
    signedFetch(env, w.worker_id, `${w.url}/internal/v1/generate`, gen, { streaming: body.stream }),
  );
  if (!res.ok) throw await workerFailure(res, worker.worker_id, kind);
  const recordUsage = (u: Usage) =>
    meter(env, tenant).record({
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
    const out = GenerateResponse.parse(await res.json());
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
  const send = (ctrl: TransformStreamDefaultController<Uint8Array>, data: unknown) =>
    ctrl.enqueue(enc.encode(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`));
  let usage: Usage | undefined;
  let finished = false;
  const relay = new TransformStream<string, Uint8Array>({
    start(ctrl) {
      if (kind === 'chat')
        send(ctrl, {
          ...chunk(null, null),
          choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }],
        });
    },
    transform(event, ctrl) {
      const data = sseData(event);
      if (data === null || data === '[DONE]') return;
      const c = GenerateChunk.parse(JSON.parse(data));
      if (c.delta) send(ctrl, chunk(c.delta, null));
      if (c.usage) usage = c.usage;
      if (c.finish_reason) {
        finished = true;
        send(ctrl, chunk(null, finishReason(c.finish_reason)));
      }
    },
    async flush(ctrl) {
      if (!usage || !finished) {
        send(ctrl, {
          error: {
            message: 'The worker ended the stream early.',
            type: 'server_error',
            param: null,
            code: 'worker_error',
          },
        });
        return;
      }
      await recordUsage(usage);
      // Every response carries usage: the last chunk has no choices and the totals.
      send(ctrl, chunk(null, null, usage));
      send(ctrl, '[DONE]');
    },
  });
  const stream = res.body!.pipeThrough(new TextDecoderStream()).pipeThrough(sseEvents()).pipeThrough(relay);
  return new Response(stream, {
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
