import { createExecutionContext, SELF } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { sha256Hex } from '@ladder/schemas';
import OpenAI, { toFile } from 'openai';
import { describe, expect, it } from 'vitest';
import { createEdgeApp } from '../../edge/src/app.ts';
import { MULTIPART_FRAMING_BYTES } from '../../edge/src/files/upload.ts';
import { STAGED_PART_BYTES } from '../../edge/src/store/files.ts';
import { type ApiErrorBody, CHAT_JSONL, call, EDGE, json, newTenant } from './helpers/api.ts';

// Uploads read as streams (edge/src/files/upload.ts): the size limit holds while the body is
// read, whatever content-length says or whether it is sent; multipart is scanned, not buffered.

const LIMIT = env.FILE_MAX_BYTES; // 64 KiB in the tests (vitest.config.ts)
const CHUNK = 4 * 1024;
const enc = new TextEncoder();
const app = createEdgeApp();

/** One valid completion line of exactly `bytes` bytes, newline included. */
function lineOf(bytes: number, completion = 'x'): string {
  const frame = JSON.stringify({ prompt: 'p', completion: '' }).length + 1;
  return `${JSON.stringify({ prompt: 'p', completion: completion.repeat(bytes - frame) })}\n`;
}

/**
 * `bytes` as a body stream of `size`-byte chunks (so no content-length when sent), pulled only on
 * demand (highWaterMark 0); `counter.pulled` is what the reader took from it.
 */
function counted(bytes: Uint8Array, size = CHUNK) {
  const counter = { pulled: 0 };
  const stream = new ReadableStream<Uint8Array>(
    {
      pull(ctl) {
        if (counter.pulled >= bytes.byteLength) return ctl.close();
        ctl.enqueue(bytes.slice(counter.pulled, counter.pulled + size));
        counter.pulled = Math.min(bytes.byteLength, counter.pulled + size);
      },
    },
    { highWaterMark: 0 },
  );
  return { stream, counter };
}

const streamOf = (bytes: Uint8Array, size = CHUNK) => counted(bytes, size).stream;

/** A multipart body as FormData serializes it (file first, as the openai client orders it). */
async function multipartOf(text: string | Uint8Array, filename = 'train.jsonl') {
  const form = new FormData();
  form.set('file', new File([text], filename, { type: 'application/jsonl' }));
  form.set('purpose', 'fine-tune');
  const res = new Response(form);
  return {
    bytes: new Uint8Array(await res.arrayBuffer()),
    contentType: res.headers.get('content-type') as string,
  };
}

/** POST /v1/files in-process (so the test's own stream is the request body), with env overrides. */
function upload(key: string, body: BodyInit, contentType: string, vars: Partial<Env> = {}, query = '') {
  return app.request(
    `/v1/files${query}`,
    { method: 'POST', body, headers: { authorization: `Bearer ${key}`, 'content-type': contentType } },
    { ...env, ...vars },
    createExecutionContext(),
  );
}

/** Nothing of the tenant's in R2 and no file row. */
async function expectNothingStored(t: { id: string; key: string }) {
  const objects = await env.FILES.list({ prefix: `tenants/${t.id}/` });
  expect(objects.objects.map((o) => o.key)).toEqual([]);
  expect((await json<{ data: unknown[] }>(await call('/v1/files', { key: t.key }))).data).toEqual([]);
}

describe('uploads are bounded while they are read', () => {
  it('cuts off a raw body without content-length at the limit: 413, the rest never read, nothing stored', async () => {
    const t = await newTenant();
    // 64 times the limit: read whole, as before the fix, the counter would reach 4 MiB.
    const { stream, counter } = counted(enc.encode(lineOf(CHUNK).repeat((64 * LIMIT) / CHUNK)));
    const res = await upload(t.key, stream, 'application/jsonl', {}, '?purpose=fine-tune');
    expect((await json<ApiErrorBody>(res, 413)).error).toMatchObject({
      code: 'file_too_large',
      param: 'file',
      message: `File is larger than the limit of ${LIMIT} bytes.`,
    });
    expect(counter.pulled).toBeLessThanOrEqual(LIMIT + CHUNK);
    await expectNothingStored(t);
  });

  it('cuts off a multipart body without content-length past the limit and its framing', async () => {
    const t = await newTenant();
    const big = lineOf(CHUNK).repeat((64 * LIMIT) / CHUNK);
    const { bytes, contentType } = await multipartOf(big);
    const { stream, counter } = counted(bytes);
    const res = await upload(t.key, stream, contentType);
    expect((await json<ApiErrorBody>(res, 413)).error.code).toBe('file_too_large');
    expect(counter.pulled).toBeLessThanOrEqual(LIMIT + MULTIPART_FRAMING_BYTES);
    await expectNothingStored(t);
  });

  it('refuses a chunked upload over the limit through the whole stack (SELF), raw and multipart', async () => {
    const t = await newTenant();
    const big = enc.encode(lineOf(CHUNK).repeat(LIMIT / CHUNK + 1));
    const raw = await SELF.fetch(`${EDGE}/v1/files?purpose=fine-tune`, {
      method: 'POST',
      body: streamOf(big),
      headers: { authorization: `Bearer ${t.key}`, 'content-type': 'application/jsonl' },
    });
    expect((await json<ApiErrorBody>(raw, 413)).error.code).toBe('file_too_large');
    const form = await multipartOf(big);
    const multipart = await SELF.fetch(`${EDGE}/v1/files`, {
      method: 'POST',
      body: streamOf(form.bytes),
      headers: { authorization: `Bearer ${t.key}`, 'content-type': form.contentType },
    });
    expect((await json<ApiErrorBody>(multipart, 413)).error.code).toBe('file_too_large');
    await expectNothingStored(t);
  });

  it('refuses a file part over the limit even when the whole body is within limit + framing', async () => {
    const t = await newTenant();
    const text = lineOf(LIMIT + 1);
    const form = await multipartOf(text);
    expect(form.bytes.byteLength).toBeLessThan(LIMIT + MULTIPART_FRAMING_BYTES);
    const res = await upload(t.key, streamOf(form.bytes), form.contentType);
    expect((await json<ApiErrorBody>(res, 413)).error.code).toBe('file_too_large');
    await expectNothingStored(t);
  });
});

describe('uploads as the openai client sends them', () => {
  const client = (key: string) =>
    new OpenAI({
      apiKey: key,
      baseURL: `${EDGE}/v1`,
      maxRetries: 0,
      fetch: (input, init) => SELF.fetch(input as string, init as RequestInit),
    });

  it('files.create stores the file, and its bytes read back', async () => {
    const t = await newTenant();
    const file = await client(t.key).files.create({
      file: await toFile(enc.encode(CHAT_JSONL), 'train.jsonl'),
      purpose: 'fine-tune',
    });
    expect(file).toMatchObject({
      object: 'file',
      filename: 'train.jsonl',
      bytes: enc.encode(CHAT_JSONL).length,
    });
    expect(file).toMatchObject({ format: 'chat', line_count: 2, sha256: await sha256Hex(CHAT_JSONL) });
    expect(await (await call(`/v1/files/${file.id}/content`, { key: t.key })).text()).toBe(CHAT_JSONL);
  });

  it('files.create of a file over the limit is refused with 413 and stores nothing', async () => {
    const t = await newTenant();
    const refused = client(t.key).files.create({
      file: await toFile(enc.encode(lineOf(LIMIT + 1)), 'big.jsonl'),
      purpose: 'fine-tune',
    });
    await expect(refused).rejects.toMatchObject({ status: 413, code: 'file_too_large', param: 'file' });
    await expectNothingStored(t);
  });

  it('files.create with bad lines names each line and field', async () => {
    const t = await newTenant();
    const bad = [CHAT_JSONL, 'not json', '{"messages":[{"role":"bot","content":"x"}]}'].join('\n');
    const refused = client(t.key).files.create({
      file: await toFile(enc.encode(bad), 'bad.jsonl'),
      purpose: 'fine-tune',
    });
    await expect(refused).rejects.toMatchObject({ status: 400, code: 'invalid_file', param: 'file' });
    const message = await refused.catch((e: Error) => e.message);
    expect(message).toContain('Invalid training file: 2 invalid line(s) of 4.');
    expect(message).toContain('line 3: not valid JSON');
    expect(message).toContain('line 4: messages.0.role: expected one of system|user|assistant');
    await expectNothingStored(t);
  });
});

describe('streamed validation', () => {
  it('names bad lines and fields the same however the body is chunked', async () => {
    const t = await newTenant();
    // A two-byte character and CRLFs, so that chunks split characters and line ends.
    const good = JSON.stringify({ prompt: 'é', completion: 'ü' });
    const text = [good, '{"prompt":"a"}', good, '{"prompt":"a","completion":"b","x":1}\r', ''].join('\r\n');
    for (const size of [1, 3, 7, 1024]) {
      const res = await upload(
        t.key,
        streamOf(enc.encode(text), size),
        'application/jsonl',
        {},
        '?purpose=fine-tune',
      );
      const err = (await json<ApiErrorBody>(res, 400)).error;
      expect(err.message, `chunks of ${size}`).toBe(
        'Invalid training file: 2 invalid line(s) of 4. line 2: completion: required; line 4: x: unknown field',
      );
      const form = await multipartOf(text);
      const viaForm = await upload(t.key, streamOf(form.bytes, size), form.contentType);
      expect((await json<ApiErrorBody>(viaForm, 400)).error.message).toBe(err.message);
    }
    await expectNothingStored(t);
  });

  it('refuses bytes that are not UTF-8, split across chunks', async () => {
    const t = await newTenant();
    const bytes = new Uint8Array([
      ...enc.encode('{"prompt":"a","completion":"'),
      0xc3,
      0x28,
      ...enc.encode('"}'),
    ]);
    const res = await upload(t.key, streamOf(bytes, 29), 'application/jsonl', {}, '?purpose=fine-tune');
    expect((await json<ApiErrorBody>(res, 400)).error.message).toBe('The file is not valid UTF-8.');
  });

  it('refuses a bad purpose (before or after the file part) and a form without a file', async () => {
    const t = await newTenant();
    for (const order of ['purpose-first', 'file-first']) {
      const form = new FormData();
      if (order === 'purpose-first') form.set('purpose', 'assistants');
      form.set('file', new File([CHAT_JSONL], 'x.jsonl'));
      if (order === 'file-first') form.set('purpose', 'assistants');
      const err = await json<ApiErrorBody>(await call('/v1/files', { key: t.key, body: form }), 400);
      expect(err.error.param, order).toBe('purpose');
    }
    const none = new FormData();
    none.set('purpose', 'fine-tune');
    const err = await json<ApiErrorBody>(await call('/v1/files', { key: t.key, body: none }), 400);
    expect(err.error).toMatchObject({ param: 'file', message: 'Missing the multipart field "file".' });
    await expectNothingStored(t);
  });

  it('stores a file of several R2 parts, holding one part at a time, and drops a refused one', async () => {
    const t = await newTenant();
    const max = 3 * STAGED_PART_BYTES;
    const text = lineOf(1024).repeat(Math.floor((2.2 * STAGED_PART_BYTES) / 1024));
    const form = await multipartOf(text);
    const res = await upload(t.key, streamOf(form.bytes, 64 * 1024), form.contentType, {
      FILE_MAX_BYTES: max,
    });
    const file = await json<{ id: string; bytes: number; sha256: string; line_count: number }>(res);
    expect(file).toMatchObject({
      bytes: text.length,
      sha256: await sha256Hex(text),
      line_count: text.length / 1024,
    });
    const content = await (await call(`/v1/files/${file.id}/content`, { key: t.key })).text();
    expect(content.length).toBe(text.length);
    expect(await sha256Hex(content)).toBe(file.sha256);

    const u = await newTenant('u');
    const refused = `${text}{"prompt":"p","completion":""}\n`;
    const bad = await multipartOf(refused);
    const res2 = await upload(u.key, streamOf(bad.bytes, 64 * 1024), bad.contentType, {
      FILE_MAX_BYTES: max,
    });
    expect((await json<ApiErrorBody>(res2, 400)).error.message).toContain(
      `line ${text.length / 1024 + 1}: completion: must not be empty`,
    );
    await expectNothingStored(u);
  });
});
