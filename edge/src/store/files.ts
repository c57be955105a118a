import type { FileObject } from '@ladder/schemas';

export interface FileRow {
  id: string;
  tenant_id: string;
  filename: string;
  purpose: FileObject['purpose'];
  bytes: number;
  format: FileObject['format'];
  line_count: number;
  sha256: string;
  r2_key: string;
  created_at: number;
}

export const fileObject = (r: FileRow): FileObject => ({
  id: r.id,
  object: 'file',
  bytes: r.bytes,
  created_at: r.created_at,
  filename: r.filename,
  purpose: r.purpose,
  format: r.format || null,
  line_count: r.line_count,
  sha256: r.sha256,
});

/** R2 keys live under the tenant's prefix; ids are SafeIds, so no key can leave it. */
export const fileKey = (tenant: string, id: string, extension = 'jsonl') =>
  `tenants/${tenant}/files/${id}.${extension}`;

export function getFile(env: Env, tenant: string, id: string): Promise<FileRow | null> {
  return env.DB.prepare('SELECT * FROM files WHERE id = ? AND tenant_id = ?')
    .bind(id, tenant)
    .first<FileRow>();
}

/** The bytes to R2 first, then the row that makes them visible (once: a second write of an id is a no-op). */
export async function storeFile(
  env: Env,
  file: { row: FileRow; bytes: Uint8Array; contentType: string },
): Promise<void> {
  const { row } = file;
  await env.FILES.put(row.r2_key, file.bytes, {
    httpMetadata: { contentType: file.contentType },
    customMetadata: { tenant: row.tenant_id, sha256: row.sha256 },
  });
  await env.DB.prepare(
    `INSERT OR IGNORE INTO files (id, tenant_id, filename, purpose, bytes, format, line_count, sha256, r2_key, created_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  )
    .bind(
      row.id,
      row.tenant_id,
      row.filename,
      row.purpose,
      row.bytes,
      // The column predates files without a format (results files): they store ''.
      row.format ?? '',
      row.line_count,
      row.sha256,
      row.r2_key,
      row.created_at,
    )
    .run();
}
