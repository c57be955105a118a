import { invalidRequest } from './errors.ts';

/**
 * A streaming multipart/form-data reader (RFC 7578 over RFC 2046 framing). Workers'
 * `Request.formData()` reads the whole body into memory before it parses it, and a File from it
 * is a second copy; this scans the chunks as they arrive and hands each part's bytes on as
 * views of them, so it holds one chunk plus at most a delimiter's length.
 *
 *   preamble CRLF "--" boundary [LWSP] CRLF
 *     headers CRLF CRLF  body          <- a part (its body may hold anything but the delimiter)
 *   CRLF "--" boundary [LWSP] CRLF     <- the next part ...
 *   CRLF "--" boundary "--"  epilogue  <- ... or the end
 *
 * The stream is read as if it began with CRLF, so the first delimiter is found like the others.
 */

export interface PartHeaders {
  /** The form field's name (Content-Disposition `name`). */
  name: string;
  /** The file name for a file field (`filename`, or RFC 5987 `filename*`); null for a plain field. */
  filename: string | null;
  contentType: string | null;
}

export type MultipartEvent =
  | { type: 'part'; headers: PartHeaders }
  /** Bytes of the current part's body: a view valid until the next event (copy to keep it). */
  | { type: 'data'; bytes: Uint8Array }
  | { type: 'end-part' };

/** A part's header block is at most this long (browsers send a few hundred bytes). */
export const MAX_PART_HEADER_BYTES = 16 * 1024;

const CR = 13;
const LF = 10;
const DASH = 0x2d;
const SPACE = 0x20;
const TAB = 0x09;
const ascii = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
const HEADER_END = ascii('\r\n\r\n');

const malformed = (why: string) =>
  invalidRequest(`The multipart/form-data body is malformed: ${why}.`, null, 'invalid_multipart');

/** The boundary parameter of a multipart/form-data content type, or null when it has none. */
export function multipartBoundary(contentType: string): string | null {
  const [type, ...params] = splitParams(contentType);
  if (type?.toLowerCase() !== 'multipart/form-data') return null;
  const boundary = paramValue(params, 'boundary');
  // RFC 2046: 1 to 70 characters, not ending in a space.
  if (!boundary || boundary.length > 70 || boundary.endsWith(' ')) return null;
  return boundary;
}

/** The parts of a multipart/form-data body as events, in order; a malformed body throws a 400. */
export async function* multipartEvents(
  chunks: AsyncIterable<Uint8Array>,
  boundary: string,
): AsyncGenerator<MultipartEvent> {
  const delimiter = ascii(`\r\n--${boundary}`);
  type State = 'preamble' | 'after-delimiter' | 'headers' | 'body' | 'epilogue';
  let state: State = 'preamble';
  let buf: Uint8Array = ascii('\r\n');
  const source = chunks[Symbol.asyncIterator]();

  /** Appends the next chunk to what is left of buf (a copy of the rest only); false at the end. */
  const more = async (): Promise<boolean> => {
    const next = await source.next();
    if (next.done) return false;
    buf = buf.byteLength === 0 ? next.value : concat(buf, next.value);
    return true;
  };

  try {
    yield* scan();
  } finally {
    // Stopped early (a refusal, or the consumer done): let the source release the body.
    await source.return?.();
  }

  async function* scan(): AsyncGenerator<MultipartEvent> {
    for (;;) {
      if (state === 'epilogue') {
        // Whatever follows the closing delimiter is ignored (and still counted by the reader).
        while (await more()) buf = buf.subarray(buf.byteLength);
        return;
      }
      if (state === 'preamble' || state === 'body') {
        const at = indexOf(buf, delimiter);
        if (at < 0) {
          // Keep a tail that could be the start of a delimiter; the rest is body (or preamble).
          const keep = Math.min(buf.byteLength, delimiter.byteLength - 1);
          const out = buf.subarray(0, buf.byteLength - keep);
          if (state === 'body' && out.byteLength > 0) yield { type: 'data', bytes: out };
          buf = buf.subarray(buf.byteLength - keep);
          if (!(await more())) throw malformed('it ended before the closing boundary');
          continue;
        }
        if (state === 'body') {
          if (at > 0) yield { type: 'data', bytes: buf.subarray(0, at) };
          yield { type: 'end-part' };
        }
        buf = buf.subarray(at + delimiter.byteLength);
        state = 'after-delimiter';
        continue;
      }
      if (state === 'after-delimiter') {
        // "--" closes the body; else optional linear white space, CRLF, and the next part.
        if (buf.byteLength < 2) {
          if (!(await more())) throw malformed('it ended before the closing boundary');
          continue;
        }
        if (buf[0] === DASH && buf[1] === DASH) {
          buf = buf.subarray(2);
          state = 'epilogue';
          continue;
        }
        let i = 0;
        while (i < buf.byteLength && (buf[i] === SPACE || buf[i] === TAB)) i++;
        if (buf.byteLength < i + 2) {
          if (i > 256) throw malformed('too much white space after a boundary');
          if (!(await more())) throw malformed('it ended before the closing boundary');
          continue;
        }
        if (buf[i] !== CR || buf[i + 1] !== LF) throw malformed('a boundary is not followed by CRLF');
        buf = buf.subarray(i + 2);
        state = 'headers';
        continue;
      }
      // headers: up to the empty line
      if (buf.byteLength >= 2 && buf[0] === CR && buf[1] === LF) {
        throw malformed('a part has no Content-Disposition header');
      }
      const end = indexOf(buf, HEADER_END);
      if (end < 0 ? buf.byteLength > MAX_PART_HEADER_BYTES : end > MAX_PART_HEADER_BYTES) {
        throw malformed('a part header block is too long');
      }
      if (end < 0) {
        if (!(await more())) throw malformed('it ended inside a part header block');
        continue;
      }
      yield { type: 'part', headers: parsePartHeaders(new TextDecoder().decode(buf.subarray(0, end))) };
      buf = buf.subarray(end + HEADER_END.byteLength);
      state = 'body';
    }
  }
}

function parsePartHeaders(block: string): PartHeaders {
  let disposition: string | null = null;
  let contentType: string | null = null;
  for (const line of block.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw malformed(`a part header line has no name: ${JSON.stringify(line.slice(0, 80))}`);
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === 'content-disposition') disposition = value;
    else if (name === 'content-type') contentType = value;
  }
  if (disposition === null) throw malformed('a part has no Content-Disposition header');
  const [kind, ...params] = splitParams(disposition);
  const field = paramValue(params, 'name');
  if (kind?.toLowerCase() !== 'form-data' || field === null) {
    throw malformed("a part's Content-Disposition is not form-data with a name");
  }
  const extended = paramValue(params, 'filename*');
  const filename = (extended && decodeExtended(extended)) ?? paramValue(params, 'filename');
  return { name: field, filename, contentType };
}

/** `type; a=1; b="x; y"` -> ['type', 'a=1', 'b="x; y"'] (semicolons inside quotes kept). */
function splitParams(header: string): string[] {
  const out: string[] = [];
  let current = '';
  let quoted = false;
  for (let i = 0; i < header.length; i++) {
    const c = header[i];
    if (quoted && c === '\\' && i + 1 < header.length) {
      current += c + header[++i];
      continue;
    }
    if (c === '"') quoted = !quoted;
    if (c === ';' && !quoted) {
      out.push(current.trim());
      current = '';
    } else current += c;
  }
  out.push(current.trim());
  return out;
}

/** A parameter's value (quotes and backslash escapes removed), or null when absent. */
function paramValue(params: string[], name: string): string | null {
  for (const p of params) {
    const eq = p.indexOf('=');
    if (eq < 0 || p.slice(0, eq).trim().toLowerCase() !== name) continue;
    const raw = p.slice(eq + 1).trim();
    if (raw.length >= 2 && raw.startsWith('"') && raw.endsWith('"')) {
      return raw.slice(1, -1).replace(/\\(.)/g, '$1');
    }
    return raw;
  }
  return null;
}

/** RFC 5987 `utf-8''na%C3%AFve.jsonl`; null when it is not UTF-8 or not decodable. */
function decodeExtended(value: string): string | null {
  const m = /^utf-8'[^']*'(.*)$/i.exec(value);
  if (!m) return null;
  try {
    return decodeURIComponent(m[1] ?? '');
  } catch {
    return null;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a, 0);
  out.set(b, a.byteLength);
  return out;
}

/** The first index of `needle` in `hay`, or -1 (native indexOf finds each candidate's first byte). */
function indexOf(hay: Uint8Array, needle: Uint8Array): number {
  const first = needle[0] as number;
  const last = hay.byteLength - needle.byteLength;
  for (let i = hay.indexOf(first); i >= 0 && i <= last; i = hay.indexOf(first, i + 1)) {
    let j = 1;
    while (j < needle.byteLength && hay[i + j] === needle[j]) j++;
    if (j === needle.byteLength) return i;
  }
  return -1;
}
