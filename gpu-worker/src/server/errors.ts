import { isAdapterError } from '@ladder/adapters';
import { apiError, describeIssues } from '@ladder/schemas';
import type { Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { z } from 'zod';
import { QueueFullError, RequestTooLargeError } from '../serving/scheduler.ts';
import { DatasetError } from '../side-net/data/index.ts';

/** An answer with a status, an OpenAI-shaped error body and optional headers. */
export class HttpError extends Error {
  override name = 'HttpError';
  constructor(
    readonly status: ContentfulStatusCode,
    message: string,
    readonly code: string,
    readonly type = status >= 500 ? 'server_error' : 'invalid_request_error',
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** The JSON body validated against `schema`; 400 naming every bad field otherwise. */
export async function parseBody<S extends z.ZodType>(c: Context, schema: S): Promise<z.infer<S>> {
  let json: unknown;
  try {
    json = JSON.parse(await c.req.text());
  } catch (e) {
    throw new HttpError(400, `request body is not JSON: ${(e as Error).message}`, 'invalid_json');
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success)
    throw new HttpError(400, `invalid request: ${describeIssues(parsed.error)}`, 'invalid_request');
  return parsed.data;
}

const ADAPTER_STATUS = {
  invalid_argument: [400, 'invalid_request_error'],
  not_found: [404, 'invalid_request_error'],
  already_exists: [409, 'invalid_request_error'],
  integrity: [422, 'invalid_request_error'],
  backbone_mismatch: [409, 'invalid_request_error'],
  unavailable: [503, 'server_error'],
  cache_full: [503, 'server_error'],
} as const;

/** Any failure as the response the edge gets: known errors keep their status and reason. */
export function errorResponse(c: Context, err: unknown): Response {
  if (err instanceof HttpError) {
    for (const [k, v] of Object.entries(err.headers)) c.header(k, v);
    return c.json(apiError(err.message, err.type, err.code), err.status);
  }
  if (err instanceof QueueFullError) {
    c.header('Retry-After', String(err.retryAfterS));
    return c.json(apiError(err.message, 'server_error', 'overloaded'), 503);
  }
  if (err instanceof RequestTooLargeError) {
    return c.json(apiError(err.message, 'invalid_request_error', 'context_length_exceeded'), 400);
  }
  if (err instanceof DatasetError)
    return c.json(apiError(err.message, 'invalid_request_error', 'invalid_dataset'), 400);
  if (isAdapterError(err)) {
    const [status, type] = ADAPTER_STATUS[err.code];
    if (status === 503) c.header('Retry-After', '1');
    return c.json(apiError(err.message, type, `adapter_${err.code}`), status);
  }
  if (err instanceof RangeError)
    return c.json(apiError(err.message, 'invalid_request_error', 'invalid_request'), 400);
  return c.json(apiError((err as Error)?.message ?? String(err), 'server_error'), 500);
}
