import { createRoute, z } from '@hono/zod-openapi';
import {
  DatasetValidator,
  FileObject,
  FilePurpose,
  formatDatasetError,
  ListQuery,
  listOf,
  sha256Hex,
} from '@ladder/schemas';
import { purgeOnWorkers } from '../jobs/purge.ts';
import { config } from '../lib/config.ts';
import { ApiException, invalidRequest, notFound } from '../lib/errors.ts';
import { newId, unixSeconds } from '../lib/ids.ts';
import { bearer, errorResponses, IdParam, json, router } from '../lib/openapi.ts';
import { type FileRow, fileKey, fileObject, getFile, storeFile } from '../store/files.ts';

/** Line errors quoted in a refused upload's message. */
const QUOTED_ERRORS = 10;

interface Upload {
  bytes: Uint8Array;
  filename: string;
  purpose: unknown;
}

/** multipart/form-data (`file`, `purpose`) as OpenAI clients send it, or the raw JSONL body. */
async function readUpload(req: Request, maxBytes: number): Promise<Upload> {
  const declared = Number(req.headers.get('content-length') ?? 0);
  const tooBig = () =>
    new ApiException(
      413,
      `File is larger than the limit of ${maxBytes} bytes.`,
      'invalid_request_error',
      'file_too_large',
      'file',
    );
  // multipart adds a little framing around the file itself
  if (declared > maxBytes + 64 * 1024) throw tooBig();
  const type = req.headers.get('content-type') ?? '';
  let upload: Upload;
  if (type.startsWith('multipart/form-data')) {
    const form = await req.formData();
    const file = form.get('file');
    if (!(file instanceof File)) throw invalidRequest('Missing the multipart field "file".', 'file');
    upload = {
      bytes: new Uint8Array(await file.arrayBuffer()),
      filename: file.name || 'upload.jsonl',
      purpose: form.get('purpose'),
    };
  } else {
    const url = new URL(req.url);
    upload = {
      bytes: new Uint8Array(await req.arrayBuffer()),
      filename: url.searchParams.get('filename') ?? 'upload.jsonl',
      purpose: url.searchParams.get('purpose'),
    };
  }
  if (upload.bytes.byteLength > maxBytes) throw tooBig();
  if (!FilePurpose.safeParse(upload.purpose).success)
    throw invalidRequest('purpose must be "fine-tune".', 'purpose');
  if (upload.filename.length > 256)
    throw invalidRequest('filename is longer than 256 characters.', 'filename');
  return upload;
}

export function fileRoutes() {
  const app = router();

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/files',
      security: bearer,
      description:
        'Upload a JSONL training file: multipart/form-data with `file` and `purpose=fine-tune`, or the raw JSONL body with `?purpose=fine-tune&filename=...`. Every line is validated; a refused file lists the first errors with their line numbers.',
      responses: { 200: json(FileObject), ...errorResponses, 413: json(z.any(), 'File too large') },
    }),
    async (c) => {
      const tenant = c.get('tenant').id;
      const maxBytes = config(c.env).fileMaxBytes;
      const upload = await readUpload(c.req.raw, maxBytes);
      let text: string;
      try {
        text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(upload.bytes);
      } catch {
        throw invalidRequest('The file is not valid UTF-8.', 'file', 'invalid_file');
      }
      const validator = new DatasetValidator({ maxBytes, keepLines: false, maxErrors: QUOTED_ERRORS });
      validator.write(text);
      const v = validator.end();
      if (!v.ok) {
        const lines = v.errors.map(formatDatasetError).join('; ');
        const more = v.errorCount > v.errors.length ? ` (and ${v.errorCount - v.errors.length} more)` : '';
        throw invalidRequest(
          `Invalid training file: ${v.invalidLineCount} invalid line(s) of ${v.lineCount}. ${lines}${more}`,
          'file',
          'invalid_file',
        );
      }
      const row: FileRow = {
        id: newId('file'),
        tenant_id: tenant,
        filename: upload.filename,
        purpose: 'fine-tune',
        bytes: upload.bytes.byteLength,
        format: v.format,
        line_count: v.lineCount,
        sha256: await sha256Hex(upload.bytes),
        r2_key: '',
        created_at: unixSeconds(),
      };
      row.r2_key = fileKey(tenant, row.id);
      await storeFile(c.env, { row, bytes: upload.bytes, contentType: 'application/jsonl' });
      return c.json(fileObject(row), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/files',
      security: bearer,
      request: { query: ListQuery },
      responses: { 200: json(listOf(FileObject)), ...errorResponses },
    }),
    async (c) => {
      const { after, limit } = c.req.valid('query');
      const { results } = await c.env.DB.prepare(
        'SELECT * FROM files WHERE tenant_id = ? AND id < ? ORDER BY id DESC LIMIT ?',
      )
        .bind(c.get('tenant').id, after ?? '\uffff', limit + 1)
        .all<FileRow>();
      return c.json(
        {
          object: 'list' as const,
          data: results.slice(0, limit).map(fileObject),
          has_more: results.length > limit,
        },
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/files/{file_id}',
      security: bearer,
      request: { params: IdParam('file_id') },
      responses: { 200: json(FileObject), ...errorResponses },
    }),
    async (c) => {
      const id = c.req.valid('param').file_id as string;
      const row = await getFile(c.env, c.get('tenant').id, id);
      if (!row) throw notFound('file', id, 'file_id');
      return c.json(fileObject(row), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/files/{file_id}/content',
      security: bearer,
      description: "The file's bytes: JSONL for an uploaded file, CSV for a job's result file.",
      request: { params: IdParam('file_id') },
      responses: {
        200: {
          description: 'The bytes',
          content: {
            'application/jsonl': { schema: z.string() },
            'text/csv': { schema: z.string() },
          },
        },
        ...errorResponses,
      },
    }),
    async (c) => {
      const id = c.req.valid('param').file_id as string;
      const row = await getFile(c.env, c.get('tenant').id, id);
      const obj = row && (await c.env.FILES.get(row.r2_key));
      if (!obj) throw notFound('file', id, 'file_id');
      const type = obj.httpMetadata?.contentType ?? 'application/jsonl';
      return c.body(obj.body, 200, { 'content-type': type }) as never;
    },
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/v1/files/{file_id}',
      security: bearer,
      description: "Deletes the file, and the GPU workers' cached copies of it.",
      request: { params: IdParam('file_id') },
      responses: {
        200: json(z.object({ id: z.string(), object: z.literal('file'), deleted: z.boolean() })),
        ...errorResponses,
      },
    }),
    async (c) => {
      const id = c.req.valid('param').file_id as string;
      const row = await getFile(c.env, c.get('tenant').id, id);
      if (!row) throw notFound('file', id, 'file_id');
      await c.env.DB.prepare('DELETE FROM files WHERE id = ? AND tenant_id = ?')
        .bind(id, row.tenant_id)
        .run();
      await c.env.FILES.delete(row.r2_key);
      // The workers' cached copies of it (and the activation caches made from it) go too.
      const { results: jobs } = await c.env.DB.prepare(
        'SELECT id, worker_id FROM jobs WHERE tenant_id = ? AND (training_file = ? OR validation_file = ?)',
      )
        .bind(row.tenant_id, id, id)
        .all<{ id: string; worker_id: string | null }>();
      await purgeOnWorkers(
        c.env,
        jobs.map((j) => ({ tenant: row.tenant_id, job_id: j.id })),
        jobs.map((j) => j.worker_id),
      );
      return c.json({ id, object: 'file' as const, deleted: true }, 200);
    },
  );
  return app;
}
