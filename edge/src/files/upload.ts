import { type DatasetValidation, DatasetValidator, FilePurpose } from '@ladder/schemas';
import { bodyTooLarge, boundedChunks } from '../lib/body.ts';
import { invalidRequest } from '../lib/errors.ts';
import { multipartBoundary, multipartEvents } from '../lib/multipart.ts';
import type { StagedObject } from '../store/files.ts';

/**
 * POST /v1/files, read as a stream: multipart/form-data (`file`, `purpose`) as OpenAI clients
 * send it, or the raw JSONL body with `?purpose=fine-tune&filename=...`. The file's bytes are
 * counted, UTF-8-decoded, validated line by line, hashed and staged in R2 as they arrive, so
 * the isolate holds a chunk, the line being read and one R2 part, never the file: a body
 * without content-length (or lying about it) is cut off at the limit with a 413.
 */

/** multipart adds a little framing (boundaries, part headers, the purpose field) around the file. */
export const MULTIPART_FRAMING_BYTES = 64 * 1024;
/** The purpose field is kept up to this many characters (it is a short word). */
const MAX_FIELD_CHARS = 1024;
const MAX_FILENAME_CHARS = 256;

export interface ReceivedUpload {
  filename: string;
  bytes: number;
  sha256: string;
  validation: DatasetValidation;
}

export interface UploadOptions {
  /** The file's size limit in bytes. */
  maxBytes: number;
  /** Line errors kept for the message (all are counted). */
  maxErrors: number;
  /** Where the bytes go while the file is still valid; the caller commits or aborts it. */
  staged: StagedObject;
}

export const fileTooLarge = (maxBytes: number) => bodyTooLarge('File', maxBytes, 'file', 'file_too_large');

const badPurpose = () => invalidRequest('purpose must be "fine-tune".', 'purpose');

function checkFilename(filename: string): string {
  if (filename.length > MAX_FILENAME_CHARS) {
    throw invalidRequest(`filename is longer than ${MAX_FILENAME_CHARS} characters.`, 'filename');
  }
  return filename;
}

/** Reads the upload to its end (or the first reason to refuse it), validating as it goes. */
export async function receiveUpload(req: Request, opts: UploadOptions): Promise<ReceivedUpload> {
  const type = req.headers.get('content-type') ?? '';
  const multipart = /^multipart\/form-data\b/i.test(type);
  const bodyLimit = opts.maxBytes + (multipart ? MULTIPART_FRAMING_BYTES : 0);
  const tooBig = () => fileTooLarge(opts.maxBytes);
  if (Number(req.headers.get('content-length') ?? 0) > bodyLimit) throw tooBig();
  const chunks = boundedChunks(req.body, bodyLimit, tooBig);
  const sink = new FileSink(opts);

  if (!multipart) {
    const url = new URL(req.url);
    if (!FilePurpose.safeParse(url.searchParams.get('purpose')).success) throw badPurpose();
    const filename = checkFilename(url.searchParams.get('filename') ?? 'upload.jsonl');
    for await (const chunk of chunks) await sink.write(chunk);
    return { filename, ...(await sink.end()) };
  }

  const boundary = multipartBoundary(type);
  if (!boundary)
    throw invalidRequest('multipart/form-data needs a boundary parameter.', null, 'invalid_multipart');
  let filename: string | null = null;
  let purpose: string | null = null;
  let field: 'file' | 'purpose' | 'other' = 'other';
  let fieldText = '';
  const fieldDecoder = new TextDecoder();
  for await (const event of multipartEvents(chunks, boundary)) {
    if (event.type === 'part') {
      const { name } = event.headers;
      if (name === 'file') {
        if (filename !== null) throw invalidRequest('More than one multipart field "file".', 'file');
        filename = checkFilename(event.headers.filename || 'upload.jsonl');
        field = 'file';
      } else {
        field = name === 'purpose' ? 'purpose' : 'other';
        fieldText = '';
      }
    } else if (event.type === 'data') {
      if (field === 'file') await sink.write(event.bytes);
      else if (field === 'purpose') {
        fieldText += fieldDecoder.decode(event.bytes, { stream: true });
        if (fieldText.length > MAX_FIELD_CHARS) throw badPurpose();
      }
    } else if (field === 'purpose') {
      // Checked where it ends: a bad purpose before the file refuses the upload unread.
      purpose = fieldText + fieldDecoder.decode();
      if (!FilePurpose.safeParse(purpose).success) throw badPurpose();
    }
  }
  if (filename === null) throw invalidRequest('Missing the multipart field "file".', 'file');
  if (purpose === null) throw badPurpose();
  return { filename, ...(await sink.end()) };
}

/** The file's bytes: counted, decoded, validated, hashed, and staged while the file is valid. */
class FileSink {
  private bytes = 0;
  private readonly decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });
  private readonly validator: DatasetValidator;
  private readonly digest = new crypto.DigestStream('SHA-256');
  private readonly hash = this.digest.getWriter();
  private staging = true;

  constructor(private readonly opts: UploadOptions) {
    this.validator = new DatasetValidator({
      maxBytes: opts.maxBytes,
      keepLines: false,
      maxErrors: opts.maxErrors,
    });
  }

  async write(chunk: Uint8Array): Promise<void> {
    this.bytes += chunk.byteLength;
    if (this.bytes > this.opts.maxBytes) throw fileTooLarge(this.opts.maxBytes);
    this.validator.write(this.decode(chunk, true));
    await this.hash.write(chunk);
    if (this.staging && this.validator.hasErrors) {
      // The file will be refused: stop sending it to R2 (the rest is only validated, for the count).
      this.staging = false;
      await this.opts.staged.abort();
    }
    if (this.staging) await this.opts.staged.write(chunk);
  }

  async end(): Promise<Omit<ReceivedUpload, 'filename'>> {
    this.validator.write(this.decode(new Uint8Array(0), false));
    await this.hash.close();
    return { bytes: this.bytes, sha256: hex(await this.digest.digest), validation: this.validator.end() };
  }

  private decode(chunk: Uint8Array, stream: boolean): string {
    try {
      return this.decoder.decode(chunk, { stream });
    } catch {
      throw invalidRequest('The file is not valid UTF-8.', 'file', 'invalid_file');
    }
  }
}

function hex(buf: ArrayBuffer): string {
  return Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, '0')).join('');
}
