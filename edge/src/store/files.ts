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
  await insertFileRow(env, row);
}

/** The row that makes a file's bytes (already in R2) visible; a second insert of an id is a no-op. */
export async function insertFileRow(env: Env, row: FileRow): Promise<void> {
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

/**
 * R2 takes a multipart upload's parts at 5 MiB or more, all of one size but the last
 * (https://developers.cloudflare.com/r2/objects/multipart-objects/).
 */
export const STAGED_PART_BYTES = 5 * 1024 * 1024;

/**
 * An object written to R2 as its bytes arrive, holding at most one part: a file that fits in one
 * part is one `put` at commit; a larger one becomes a multipart upload, a part sent each time the
 * buffer fills (awaited, so a fast client waits for R2). Nothing is visible under the key until
 * `commit`; `abort` drops what was staged.
 */
export class StagedObject {
  private readonly part: Uint8Array;
  private filled = 0;
  private upload: R2MultipartUpload | null = null;
  private readonly parts: R2UploadedPart[] = [];
  private done = false;

  constructor(
    private readonly bucket: R2Bucket,
    private readonly key: string,
    private readonly options: { contentType: string; customMetadata: Record<string, string> },
    partBytes = STAGED_PART_BYTES,
  ) {
    this.part = new Uint8Array(partBytes);
  }

  /** Copies `bytes` in; each full part goes to R2 before this resolves. */
  async write(bytes: Uint8Array): Promise<void> {
    if (this.done) throw new Error('StagedObject: write after commit or abort');
    let at = 0;
    while (at < bytes.byteLength) {
      const n = Math.min(bytes.byteLength - at, this.part.byteLength - this.filled);
      this.part.set(bytes.subarray(at, at + n), this.filled);
      this.filled += n;
      at += n;
      if (this.filled === this.part.byteLength) await this.sendPart();
    }
  }

  /** Makes the object visible under its key with everything written; extra metadata joins it where R2 still takes it (a single put). */
  async commit(extraMetadata: Record<string, string> = {}): Promise<void> {
    if (this.done) throw new Error('StagedObject: commit after commit or abort');
    this.done = true;
    if (this.upload === null) {
      await this.bucket.put(this.key, this.part.subarray(0, this.filled), {
        httpMetadata: { contentType: this.options.contentType },
        customMetadata: { ...this.options.customMetadata, ...extraMetadata },
      });
      return;
    }
    if (this.filled > 0) await this.sendPart();
    await this.upload.complete(this.parts);
  }

  /** Drops the staged parts (nothing was visible); safe to call more than once. */
  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.upload?.abort();
  }

  private async sendPart(): Promise<void> {
    this.upload ??= await this.bucket.createMultipartUpload(this.key, {
      httpMetadata: { contentType: this.options.contentType },
      customMetadata: this.options.customMetadata,
    });
    const n = this.parts.length + 1;
    this.parts.push(await this.upload.uploadPart(n, this.part.subarray(0, this.filled)));
    this.filled = 0;
  }
}
