import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { type ApiErrorBody, CHAT_JSONL, call, json, newTenant, uploadFile } from './helpers/api.ts';

describe('files', () => {
  it('uploads multipart JSONL, lists, gets, reads and deletes it', async () => {
    const t = await newTenant();
    const file = await uploadFile(t.key);
    expect(file).toMatchObject({
      object: 'file',
      purpose: 'fine-tune',
      format: 'chat',
      line_count: 2,
      filename: 'train.jsonl',
    });
    const list = await json<{ data: { id: string }[]; has_more: boolean }>(
      await call('/v1/files', { key: t.key }),
    );
    expect(list.data.map((f) => f.id)).toEqual([file.id]);
    expect(await json(await call(`/v1/files/${file.id}`, { key: t.key }))).toMatchObject({ id: file.id });
    expect(await (await call(`/v1/files/${file.id}/content`, { key: t.key })).text()).toBe(CHAT_JSONL);
    expect(await json(await call(`/v1/files/${file.id}`, { key: t.key, method: 'DELETE' }))).toMatchObject({
      deleted: true,
    });
    expect((await call(`/v1/files/${file.id}`, { key: t.key })).status).toBe(404);
  });

  it('accepts a raw JSONL body with ?purpose=fine-tune', async () => {
    const t = await newTenant();
    const res = await call('/v1/files?purpose=fine-tune&filename=raw.jsonl', {
      key: t.key,
      body: '{"prompt":"a","completion":"b"}\n',
      headers: { 'content-type': 'application/jsonl' },
    });
    expect(await json(res)).toMatchObject({ filename: 'raw.jsonl', format: 'completion', line_count: 1 });
  });

  it('refuses a file with bad lines, naming each line', async () => {
    const t = await newTenant();
    const bad = [CHAT_JSONL, 'not json', '{"messages":[{"role":"bot","content":"x"}]}'].join('\n');
    const form = new FormData();
    form.set('purpose', 'fine-tune');
    form.set('file', new File([bad], 'bad.jsonl'));
    const err = await json<ApiErrorBody>(await call('/v1/files', { key: t.key, body: form }), 400);
    expect(err.error.code).toBe('invalid_file');
    expect(err.error.param).toBe('file');
    expect(err.error.message).toContain('line 3: not valid JSON');
    expect(err.error.message).toContain('line 4: messages.0.role');
    expect((await json<{ data: unknown[] }>(await call('/v1/files', { key: t.key }))).data).toEqual([]);
  });

  it('refuses a file over the size limit with 413', async () => {
    const t = await newTenant();
    const line = JSON.stringify({ prompt: 'p', completion: 'x'.repeat(1000) });
    const big = Array.from({ length: Math.ceil(env.FILE_MAX_BYTES / line.length) + 1 }, () => line).join(
      '\n',
    );
    const res = await call('/v1/files?purpose=fine-tune', {
      key: t.key,
      body: big,
      headers: { 'content-type': 'application/jsonl' },
    });
    expect((await json<ApiErrorBody>(res, 413)).error.code).toBe('file_too_large');
  });

  it('refuses a wrong purpose and a missing key', async () => {
    const t = await newTenant();
    const form = new FormData();
    form.set('purpose', 'assistants');
    form.set('file', new File([CHAT_JSONL], 'x.jsonl'));
    expect(
      (await json<ApiErrorBody>(await call('/v1/files', { key: t.key, body: form }), 400)).error.param,
    ).toBe('purpose');
    const noKey = await json<ApiErrorBody>(await call('/v1/files'), 401);
    expect(noKey.error.code).toBe('invalid_api_key');
    expect((await call('/v1/files', { key: 'sk-ladder-wrong' })).status).toBe(401);
  });

  it("answers 404 for another tenant's file", async () => {
    const a = await newTenant('a');
    const b = await newTenant('b');
    const file = await uploadFile(a.key);
    expect((await call(`/v1/files/${file.id}`, { key: b.key })).status).toBe(404);
    expect((await call(`/v1/files/${file.id}`, { key: b.key, method: 'DELETE' })).status).toBe(404);
    expect((await json<{ data: unknown[] }>(await call('/v1/files', { key: b.key }))).data).toEqual([]);
    expect((await call(`/v1/files/${file.id}`, { key: a.key })).status).toBe(200);
  });
});
