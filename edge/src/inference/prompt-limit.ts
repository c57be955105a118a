import type { MiddlewareHandler } from 'hono';
import { bodyTooLarge, readBounded } from '../lib/body.ts';
import { config } from '../lib/config.ts';
import { invalidRequest } from '../lib/errors.ts';

const enc = new TextEncoder();
/** JSON framing around the prompt, and escapes (a control character is 6 bytes as \uXXXX). */
const bodyBytesFor = (promptMaxBytes: number) => promptMaxBytes * 6 + 64 * 1024;

const utf8Bytes = (s: unknown) => (typeof s === 'string' ? enc.encode(s).byteLength : 0);

/**
 * Bounds what a completion request may ask a worker to tokenize: the body is read only up to a
 * few times PROMPT_MAX_BYTES (413 past it), and the prompt (a completion's `prompt`, the sum of a
 * chat's message contents) must fit PROMPT_MAX_BYTES in UTF-8 (400 naming the field). Anything
 * that is not JSON of the expected shape is left to the route's validator.
 */
export function promptLimit(field: 'prompt' | 'messages'): MiddlewareHandler<{ Bindings: Env }> {
  return async function promptLimit(c, next) {
    const max = config(c.env).promptMaxBytes;
    const limit = bodyBytesFor(max);
    const bytes = await readBounded(c.req.raw, limit, () => bodyTooLarge('The request body', limit, field));
    c.req.raw = new Request(c.req.raw, { body: bytes });
    let parsed: unknown;
    try {
      parsed = await c.req.json();
    } catch {
      return next();
    }
    const body = parsed as { prompt?: unknown; messages?: unknown };
    const size =
      field === 'prompt'
        ? utf8Bytes(body.prompt)
        : Array.isArray(body.messages)
          ? body.messages.reduce((n: number, m) => n + utf8Bytes((m as { content?: unknown })?.content), 0)
          : 0;
    if (size > max) {
      throw invalidRequest(
        `${field === 'prompt' ? 'prompt' : "messages' contents"} is ${size} bytes, over the limit of ${max} bytes (PROMPT_MAX_BYTES).`,
        field,
        'prompt_too_large',
      );
    }
    await next();
  };
}
