import type { FileObject } from '@ladder/schemas';

export interface FileRow {
  id: string;
  tenant_id: string;
  filename: string;
  purpose: string;
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
  purpose: 'fine-tune',
  format: r.format,
  line_count: r.line_count,
  sha256: r.sha256,
});

/** R2 keys live under the tenant's prefix; ids are SafeIds, so no key can leave it. */
export const fileKey = (tenant: string, id: string) => `tenants/${tenant}/files/${id}.jsonl`;

export function getFile(env: Env, tenant: string, id: string): Promise<FileRow | null> {
  return env.DB.prepare('SELECT * FROM files WHERE id = ? AND tenant_id = ?')
    .bind(id, tenant)
    .first<FileRow>();
}
