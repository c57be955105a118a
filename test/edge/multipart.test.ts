import { describe, expect, it } from 'vitest';
import { ApiException } from '../../edge/src/lib/errors.ts';
import {
  MAX_PART_HEADER_BYTES,
  type MultipartEvent,
  multipartBoundary,
  multipartEvents,
} from '../../edge/src/lib/multipart.ts';

const enc = new TextEncoder();

/** `bytes` in chunks of `size` (the last one shorter). */
async function* chunked(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < bytes.byteLength; at += size) yield bytes.slice(at, at + size);
}

interface Part {
  name: string;
  filename: string | null;
  contentType: string | null;
  data: string;
}

async function parts(body: Uint8Array | string, boundary: string, size = 1 << 20): Promise<Part[]> {
  const bytes = typeof body === 'string' ? enc.encode(body) : body;
  const out: Part[] = [];
  const data: Uint8Array[] = [];
  let ended = 0;
  for await (const e of multipartEvents(chunked(bytes, size), boundary) as AsyncGenerator<MultipartEvent>) {
    if (e.type === 'part') {
      out.push({ ...e.headers, data: '' });
      data.length = 0;
    } else if (e.type === 'data') data.push(e.bytes.slice());
    else {
      (out.at(-1) as Part).data = new TextDecoder().decode(await new Blob(data).arrayBuffer());
      ended++;
    }
  }
  expect(ended).toBe(out.length);
  return out;
}

async function refusal(body: string, boundary: string): Promise<string> {
  try {
    await parts(body, boundary);
  } catch (e) {
    expect(e).toBeInstanceOf(ApiException);
    expect((e as ApiException).status).toBe(400);
    expect((e as ApiException).code).toBe('invalid_multipart');
    return (e as Error).message;
  }
  throw new Error('expected a refusal');
}

describe('multipart/form-data stream reader', () => {
  it('reads what FormData serializes, at every chunk size down to one byte', async () => {
    const form = new FormData();
    form.set('purpose', 'fine-tune');
    // Bytes that look like the start of a delimiter, a CRLF at the file's edges, non-ASCII text.
    const file = '\r\n--almost\r\n-- a line\r\nnaïve ✓\r\n';
    form.set('file', new File([file], 'train.jsonl', { type: 'application/jsonl' }));
    const res = new Response(form);
    const boundary = multipartBoundary(res.headers.get('content-type') ?? '') as string;
    expect(boundary).toBeTruthy();
    const body = new Uint8Array(await res.arrayBuffer());
    const want = [
      { name: 'purpose', filename: null, contentType: null, data: 'fine-tune' },
      { name: 'file', filename: 'train.jsonl', contentType: 'application/jsonl', data: file },
    ];
    for (const size of [1, 2, 3, 5, 8, 13, 64, body.byteLength]) {
      expect(await parts(body, boundary, size), `chunks of ${size}`).toEqual(want);
    }
  });

  it('keeps a partial delimiter inside the data, and ignores preamble, padding and epilogue', async () => {
    const b = 'XyZ';
    const body = `preamble\r\n--${b} \t\r\nContent-Disposition: form-data; name="a"\r\n\r\nx\r\n--XyQ\r\n--Xy\r\n--${b}\r\ncontent-disposition: form-data; name="b"; filename="q \\"1\\".txt"\r\n\r\n\r\n--${b}--\r\nepilogue --${b}`;
    for (const size of [1, 4, 1000]) {
      expect(await parts(body, b, size)).toEqual([
        { name: 'a', filename: null, contentType: null, data: 'x\r\n--XyQ\r\n--Xy' },
        { name: 'b', filename: 'q "1".txt', contentType: null, data: '' },
      ]);
    }
  });

  it("agrees with the runtime's own formData() on names, file names and contents", async () => {
    // As undici (the openai client in Node) frames it: the file first, a quote escaped as %22.
    const b = '----formdata-undici-020548749576';
    const body = `--${b}\r\nContent-Disposition: form-data; name="file"; filename="naïve %22q%22.jsonl"\r\nContent-Type: application/octet-stream\r\n\r\n{"a":1}\n\r\n--${b}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n--${b}--\r\n`;
    const form = await new Request('https://x.test', {
      method: 'POST',
      body,
      headers: { 'content-type': `multipart/form-data; boundary=${b}` },
    }).formData();
    const file = form.get('file') as File;
    expect(await parts(body, b, 7)).toEqual([
      { name: 'file', filename: file.name, contentType: file.type, data: await file.text() },
      { name: 'purpose', filename: null, contentType: null, data: form.get('purpose') },
    ]);
  });

  it('decodes an RFC 5987 filename* over the plain filename', async () => {
    const body = `--b\r\nContent-Disposition: form-data; name="file"; filename="x.jsonl"; filename*=UTF-8''na%C3%AFve.jsonl\r\n\r\n1\r\n--b--`;
    expect((await parts(body, 'b'))[0]?.filename).toBe('naïve.jsonl');
  });

  it('takes the boundary from the content type, quoted or not', () => {
    expect(multipartBoundary('multipart/form-data; boundary=abc')).toBe('abc');
    expect(multipartBoundary('Multipart/Form-Data; charset=utf-8; boundary="a b;c"')).toBe('a b;c');
    expect(multipartBoundary('multipart/form-data')).toBeNull();
    expect(multipartBoundary('multipart/mixed; boundary=abc')).toBeNull();
    expect(multipartBoundary(`multipart/form-data; boundary=${'a'.repeat(71)}`)).toBeNull();
  });

  it('refuses a body that ends early, a part without a name and an endless header block', async () => {
    expect(await refusal('--b\r\nContent-Disposition: form-data; name="a"\r\n\r\nx', 'b')).toContain(
      'ended before the closing boundary',
    );
    expect(await refusal('no delimiter at all', 'b')).toContain('ended before the closing boundary');
    expect(await refusal('--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--', 'b')).toContain(
      'not form-data with a name',
    );
    expect(await refusal('--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--', 'b')).toContain(
      'no Content-Disposition',
    );
    expect(await refusal('--bXX\r\n', 'b')).toContain('not followed by CRLF');
    const long = `--b\r\nContent-Disposition: form-data; name="a"; x="${'y'.repeat(MAX_PART_HEADER_BYTES)}"\r\n\r\nx\r\n--b--`;
    expect(await refusal(long, 'b')).toContain('header block is too long');
  });
});
