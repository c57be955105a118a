import { createRoute, z } from '@hono/zod-openapi';
import { FileObject, formatDatasetError, ListQuery, listOf } from '@ladder/schemas';
import { type ReceivedUpload, receiveUpload } from '../files/upload.ts';
import { purgeOnWorkers } from '../jobs/purge.ts';
import { config } from '../lib/config.ts';
import { invalidRequest, notFound } from '../lib/errors.ts';
import { newId, unixSeconds } from '../lib/ids.ts';
import { bearer, errorResponses, IdParam, json, router } from '../lib/openapi.ts';
import { type FileRow, fileKey, fileObject, getFile, insertFileRow, StagedObject } from '../store/files.ts';

/** Line errors quoted in a refused upload's message. */
const QUOTED_ERRORS = 10;

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
      const id = newId('file');
      const key = fileKey(tenant, id);
      const staged = new StagedObject(c.env.FILES, key, {
        contentType: 'application/jsonl',
        customMetadata: { tenant },
      });
      let upload: ReceivedUpload;
      try {
        upload = await receiveUpload(c.req.raw, {
          maxBytes: config(c.env).fileMaxBytes,
          maxErrors: QUOTED_ERRORS,
          staged,
        });
        const v = upload.validation;
        if (!v.ok) {
          const lines = v.errors.map(formatDatasetError).join('; ');
          const more = v.errorCount > v.errors.length ? ` (and ${v.errorCount - v.errors.length} more)` : '';
          throw invalidRequest(
            `Invalid training file: ${v.invalidLineCount} invalid line(s) of ${v.lineCount}. ${lines}${more}`,
            'file',
            'invalid_file',
          );
        }
        // (A file that fit in one part gets its hash in the object's metadata too.)
        await staged.commit({ sha256: upload.sha256 });
      } finally {
        await staged.abort().catch(() => undefined); // a no-op once committed
      }
      const row: FileRow = {
        id,
        tenant_id: tenant,
        filename: upload.filename,
        purpose: 'fine-tune',
        bytes: upload.bytes,
        format: upload.validation.format,
        line_count: upload.validation.lineCount,
        sha256: upload.sha256,
        r2_key: key,
        created_at: unixSeconds(),
      };
      await insertFileRow(c.env, row);
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
