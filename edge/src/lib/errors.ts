import { apiError, describeIssues } from '@ladder/schemas';
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { ZodError } from 'zod';

/** A failure with its HTTP status, thrown anywhere and rendered by the one `onError`. */
export class ApiException extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    message: string,
    readonly type: string,
    readonly code: string | null = null,
    readonly param: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export const invalidRequest = (message: string, param: string | null = null, code = 'invalid_request') =>
  new ApiException(400, message, 'invalid_request_error', code, param);

export const notFound = (what: string, id: string, param: string | null = null) =>
  new ApiException(
    404,
    `No ${what} found with id '${id}'`,
    'invalid_request_error',
    `${what}_not_found`,
    param,
  );

export const unauthorized = (message: string) =>
  new ApiException(401, message, 'invalid_request_error', 'invalid_api_key');

export const conflict = (message: string, code: string) =>
  new ApiException(409, message, 'invalid_request_error', code);

/** The single error renderer: every failure leaves as `{ error: { message, type, param, code } }`. */
export function renderError(err: Error, c: Context): Response {
  if (err instanceof ApiException) {
    return c.json(apiError(err.message, err.type, err.code, err.param), err.status, err.headers);
  }
  if (err instanceof ZodError) {
    return c.json(apiError(describeIssues(err), 'invalid_request_error', 'invalid_request'), 400);
  }
  if (err instanceof HTTPException) {
    const type =
      err.status === 401
        ? 'invalid_request_error'
        : err.status < 500
          ? 'invalid_request_error'
          : 'server_error';
    return c.json(apiError(err.message, type, null), err.status);
  }
  console.error('edge: unhandled error', err);
  return c.json(apiError('The server had an error while processing your request.', 'server_error'), 500);
}
