import { z } from 'zod';

/**
 * Training-file lines (DESIGN.md section 6): JSONL, one example a line, one format a file.
 *
 *   chat            {"messages":[{"role":"system"|"user"|"assistant","content":"..."}, ...]}
 *   completion      {"prompt":"...","completion":"..."}
 *   classification  {"text":"...","label":"..."}
 *
 * The loss falls on assistant turns / the completion / the label text only. The edge validates
 * uploads with this module (Workers runtime) and the GPU worker validates again before training,
 * so nothing here touches Node APIs.
 */

export const ChatRole = z.enum(['system', 'user', 'assistant'], {
  error: 'expected one of system|user|assistant',
});
export type ChatRole = z.infer<typeof ChatRole>;

export const ChatTurn = z.strictObject({ role: ChatRole, content: z.string() });
export type ChatTurn = z.infer<typeof ChatTurn>;

export const ChatLine = z.strictObject({
  messages: z
    .array(ChatTurn)
    .min(1, 'must hold at least one message')
    .refine(
      (ms) => ms.length === 0 || ms.some((m) => m.role === 'assistant'),
      'must hold at least one assistant message (the loss is on assistant turns)',
    ),
});
export type ChatLine = z.infer<typeof ChatLine>;

export const CompletionLine = z.strictObject({
  /** May be empty: then the completion is trained with no context. */
  prompt: z.string(),
  completion: z.string().min(1, 'must not be empty'),
});
export type CompletionLine = z.infer<typeof CompletionLine>;

export const ClassificationLine = z.strictObject({
  text: z.string().min(1, 'must not be empty'),
  /** The class name, trained as the completion's text; " pos" and "pos" would be two classes, so no edge spaces. */
  label: z
    .string()
    .min(1, 'must not be empty')
    .refine((s) => s.trim() === s, 'must not start or end with whitespace'),
});
export type ClassificationLine = z.infer<typeof ClassificationLine>;

export const DatasetFormat = z.enum(['chat', 'completion', 'classification']);
export type DatasetFormat = z.infer<typeof DatasetFormat>;

export const DATASET_LINE_SCHEMAS = {
  chat: ChatLine,
  completion: CompletionLine,
  classification: ClassificationLine,
} as const;

/** A valid line with its 1-based line number in the file (blank lines count). */
export type DatasetRecord =
  | { line: number; format: 'chat'; value: ChatLine }
  | { line: number; format: 'completion'; value: CompletionLine }
  | { line: number; format: 'classification'; value: ClassificationLine };

export interface DatasetLineError {
  /** 1-based line number; null for a whole-file problem (empty file, size limit). */
  line: number | null;
  /** Dotted path inside the line (`messages.2.role`); null when the line as a whole is wrong. */
  field: string | null;
  message: string;
}

export interface DatasetValidationOptions {
  /** Require this format; by default the first recognisable line sets it for the file. */
  format?: DatasetFormat;
  /** UTF-8 size of the whole file. */
  maxBytes?: number;
  /** Non-blank lines (examples). */
  maxLines?: number;
  /**
   * UTF-8 size of one line: a line is held whole until its newline, so this bounds what a
   * streaming check keeps (far above any context length: a line over it cannot be trained whole).
   */
  maxLineBytes?: number;
  /** Error details kept (the counts go on); bounds memory on a hopeless file. */
  maxErrors?: number;
  /** Keep the parsed lines (false for an upload check that only needs the verdict). */
  keepLines?: boolean;
}

export const DATASET_LIMITS = {
  maxBytes: 100 * 1024 * 1024,
  maxLines: 1_000_000,
  maxLineBytes: 8 * 1024 * 1024,
  maxErrors: 100,
  keepLines: true,
} as const satisfies Required<Omit<DatasetValidationOptions, 'format'>>;

interface DatasetStats {
  /** The file's format: the required one, else the first recognisable line's; null if none. */
  format: DatasetFormat | null;
  /** Valid lines (all of them when ok; kept only with keepLines). */
  lines: DatasetRecord[];
  /** Non-blank lines read. */
  lineCount: number;
  bytes: number;
}

export type DatasetValidation =
  | (DatasetStats & { ok: true; format: DatasetFormat })
  | (DatasetStats & {
      ok: false;
      /** The first maxErrors problems, in line order. */
      errors: DatasetLineError[];
      errorCount: number;
      invalidLineCount: number;
      /** A size or line limit was hit: reading stopped there, so the file as a whole is refused. */
      limitExceeded: boolean;
    });

/** `line 7: messages.2.role: expected one of system|user|assistant`, `file: ...` */
export function formatDatasetError(e: DatasetLineError): string {
  return `${e.line === null ? 'file' : `line ${e.line}`}: ${e.field === null ? '' : `${e.field}: `}${e.message}`;
}

const FORMAT_KEYS: [DatasetFormat, string[]][] = [
  ['chat', ['messages']],
  ['completion', ['prompt', 'completion']],
  ['classification', ['text', 'label']],
];
const FORMAT_SHAPE: Record<DatasetFormat, string> = {
  chat: '{"messages"}',
  completion: '{"prompt","completion"}',
  classification: '{"text","label"}',
};

function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

// Field messages for every schema above: `required`, `expected a string, got a number`.
const lineErrorMap: z.core.$ZodErrorMap = (iss) => {
  if (iss.code === 'invalid_type') {
    if (iss.input === undefined) return 'required';
    const want = iss.expected === 'array' || iss.expected === 'object' ? 'an' : 'a';
    return `expected ${want} ${iss.expected}, got ${kindOf(iss.input)}`;
  }
  return undefined;
};

function issueErrors(line: number, issues: readonly z.core.$ZodIssue[]): DatasetLineError[] {
  const out: DatasetLineError[] = [];
  for (const issue of issues) {
    const path = issue.path.map(String);
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys)
        out.push({ line, field: [...path, key].join('.'), message: 'unknown field' });
    } else {
      out.push({ line, field: path.length ? path.join('.') : null, message: issue.message });
    }
  }
  return out;
}

/** Which format a parsed line claims by its keys; null when it has none of them. */
export function detectDatasetFormat(value: Record<string, unknown>): DatasetFormat | null {
  for (const [format, keys] of FORMAT_KEYS) if (keys.some((k) => k in value)) return format;
  return null;
}

/**
 * Checks a JSONL training file as it streams in (`write` chunks split anywhere, then `end`).
 * Lines are `\n`-separated (a trailing `\r` is dropped); blank lines are skipped but counted,
 * so line numbers match an editor's.
 */
export class DatasetValidator {
  private readonly opts: Required<Omit<DatasetValidationOptions, 'format'>> & { format?: DatasetFormat };
  private format: DatasetFormat | null;
  private formatLine: number | null = null;
  private readonly lines: DatasetRecord[] = [];
  private readonly errors: DatasetLineError[] = [];
  private errorCount = 0;
  private invalidLineCount = 0;
  private lineNumber = 0;
  private lineCount = 0;
  private bytes = 0;
  /** The current line's text before its newline (pieces, joined once the line ends). */
  private pending: string[] = [];
  private pendingBytes = 0;
  private limitExceeded = false;
  private ended = false;

  constructor(options: DatasetValidationOptions = {}) {
    this.opts = { ...DATASET_LIMITS, ...options };
    this.format = options.format ?? null;
  }

  write(chunk: string): void {
    if (this.ended) throw new Error('DatasetValidator: write after end');
    if (this.limitExceeded) return;
    const chunkBytes = utf8Length(chunk);
    this.bytes += chunkBytes;
    if (this.bytes > this.opts.maxBytes) {
      this.stop({ line: null, field: null, message: `larger than the limit of ${this.opts.maxBytes} bytes` });
      return;
    }
    // Only the new chunk is searched for newlines: a long line arriving in many chunks is
    // neither re-scanned nor re-joined per chunk.
    let start = 0;
    for (let nl = chunk.indexOf('\n'); nl >= 0 && !this.limitExceeded; nl = chunk.indexOf('\n', start)) {
      const piece = chunk.slice(start, nl);
      if (!this.addToLine(piece, utf8Length(piece))) return;
      const line = this.pending.length === 1 ? (this.pending[0] as string) : this.pending.join('');
      this.pending = [];
      this.pendingBytes = 0;
      this.readLine(line);
      start = nl + 1;
    }
    if (this.limitExceeded || start === chunk.length) return;
    const rest = start === 0 ? chunk : chunk.slice(start);
    this.addToLine(rest, start === 0 ? chunkBytes : utf8Length(rest));
  }

  /** Whether an error was found so far (the file will be refused; reading on only counts). */
  get hasErrors(): boolean {
    return this.errorCount > 0;
  }

  /** The next piece of the current line; false (and the file stopped) past maxLineBytes. */
  private addToLine(piece: string, bytes: number): boolean {
    this.pendingBytes += bytes;
    if (this.pendingBytes > this.opts.maxLineBytes) {
      this.stop({
        line: this.lineNumber + 1,
        field: null,
        message: `longer than the limit of ${this.opts.maxLineBytes} bytes for one line`,
      });
      return false;
    }
    if (piece !== '') this.pending.push(piece);
    return true;
  }

  end(): DatasetValidation {
    if (!this.ended) {
      this.ended = true;
      if (!this.limitExceeded && this.pending.length > 0) this.readLine(this.pending.join(''));
      this.pending = [];
      if (this.lineCount === 0 && !this.limitExceeded) {
        this.addErrors([
          { line: null, field: null, message: 'no examples (the file has no non-blank lines)' },
        ]);
      }
    }
    const stats = {
      lines: this.lines,
      lineCount: this.lineCount,
      bytes: this.bytes,
    };
    if (this.errorCount === 0 && this.format !== null) return { ok: true, format: this.format, ...stats };
    return {
      ok: false,
      format: this.format,
      ...stats,
      errors: this.errors,
      errorCount: this.errorCount,
      invalidLineCount: this.invalidLineCount,
      limitExceeded: this.limitExceeded,
    };
  }

  private readLine(raw: string): void {
    const line = ++this.lineNumber;
    let text = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line === 1 && text.startsWith('\uFEFF')) text = text.slice(1);
    if (text.trim() === '') return;
    if (++this.lineCount > this.opts.maxLines) {
      this.lineCount--;
      this.stop({ line, field: null, message: `more than ${this.opts.maxLines} examples (the limit)` });
      return;
    }
    const errors = this.check(line, text);
    if (errors.length) {
      this.invalidLineCount++;
      this.addErrors(errors);
    }
  }

  private check(line: number, text: string): DatasetLineError[] {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      return [{ line, field: null, message: `not valid JSON: ${(e as Error).message}` }];
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      return [{ line, field: null, message: `expected a JSON object, got ${kindOf(value)}` }];
    }
    const format = detectDatasetFormat(value as Record<string, unknown>);
    if (format === null) {
      const shapes = Object.values(FORMAT_SHAPE).join(', ');
      return [{ line, field: null, message: `not a dataset line: expected one of ${shapes}` }];
    }
    if (this.format === null) {
      this.format = format;
      this.formatLine = line;
    } else if (format !== this.format) {
      const why =
        this.formatLine === null
          ? `this file must hold ${this.format} lines`
          : `line ${this.formatLine} made this a ${this.format} file (one format per file)`;
      return [{ line, field: null, message: `a ${format} line ${FORMAT_SHAPE[format]}, but ${why}` }];
    }
    const parsed = DATASET_LINE_SCHEMAS[format].safeParse(value, { error: lineErrorMap });
    if (!parsed.success) return issueErrors(line, parsed.error.issues);
    if (this.opts.keepLines) this.lines.push({ line, format, value: parsed.data } as DatasetRecord);
    return [];
  }

  private addErrors(errors: DatasetLineError[]): void {
    this.errorCount += errors.length;
    for (const e of errors) if (this.errors.length < this.opts.maxErrors) this.errors.push(e);
  }

  private stop(error: DatasetLineError): void {
    this.limitExceeded = true;
    this.pending = [];
    this.addErrors([error]);
  }
}

/** Validates a whole JSONL text: the parsed lines, or every problem with its line and field. */
export function validateDataset(text: string, options: DatasetValidationOptions = {}): DatasetValidation {
  const validator = new DatasetValidator(options);
  validator.write(text);
  return validator.end();
}

/** UTF-8 length without TextEncoder's copy: a surrogate pair is 2 + 2 bytes. */
function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    n += c < 0x80 ? 1 : c < 0x800 || (c >= 0xd800 && c <= 0xdfff) ? 2 : 3;
  }
  return n;
}
