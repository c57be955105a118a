import { ApiException } from './errors.ts';

/** 413 naming the limit (and the field the bytes were for). */
export const bodyTooLarge = (
  what: string,
  maxBytes: number,
  param: string | null,
  code = 'request_too_large',
) =>
  new ApiException(
    413,
    `${what} is larger than the limit of ${maxBytes} bytes.`,
    'invalid_request_error',
    code,
    param,
  );

/**
 * A request body's chunks, counted as they arrive: past `maxBytes` the stream is cancelled and
 * `onTooLarge` thrown, so a body without content-length (or lying about it) is never held whole.
 */
export async function* boundedChunks(
  body: ReadableStream<Uint8Array> | null,
  maxBytes: number,
  onTooLarge: () => Error,
): AsyncGenerator<Uint8Array> {
  if (!body) return;
  const reader = body.getReader();
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      size += value.byteLength;
      if (size > maxBytes) {
        await reader.cancel().catch(() => undefined);
        throw onTooLarge();
      }
      yield value;
    }
  } finally {
    reader.releaseLock();
  }
}

/** The whole body, read through boundedChunks (one copy). */
export async function readBounded(
  req: Request,
  maxBytes: number,
  onTooLarge: () => Error,
): Promise<Uint8Array> {
  const declared = Number(req.headers.get('content-length') ?? 0);
  if (declared > maxBytes) throw onTooLarge();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const c of boundedChunks(req.body, maxBytes, onTooLarge)) {
    chunks.push(c);
    size += c.byteLength;
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}
