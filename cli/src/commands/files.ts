import { readFile } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { DatasetValidator, FileObject, formatDatasetError, listOf } from '@ladder/schemas';
import {
  type Command,
  type CommandContext,
  type CommandGroup,
  type CommandInput,
  numberOption,
  type OptionSpec,
  stringOption,
} from '../command.ts';
import { ApiRequestError, CliError } from '../errors.ts';
import { bytes, dateTime, integer, json, table } from '../format.ts';

/** Line errors shown from the local check before giving up on a file. */
const SHOWN_LINE_ERRORS = 20;

export const PAGE_OPTIONS: Record<string, OptionSpec> = {
  limit: { type: 'string', value: '<n>', help: 'how many, newest first (1-100, default 20)' },
  after: { type: 'string', value: '<id>', help: 'the page after this id' },
};

export function pageQuery(input: CommandInput) {
  return {
    limit: numberOption(input, 'limit', { min: 1, max: 100, integer: true }),
    after: stringOption(input, 'after'),
  };
}

/**
 * Checks every line with the same validator the edge uses (so a bad file is not sent), then uploads
 * it. The edge validates again; if it refuses, its line errors are listed one per line too.
 */
export async function uploadFile(ctx: CommandContext, path: string): Promise<FileObject> {
  const absolute = resolve(ctx.io.cwd, path);
  let content: Buffer;
  try {
    content = await readFile(absolute);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CliError(`cannot read ${path}: ${code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  const validator = new DatasetValidator({ keepLines: false, maxErrors: SHOWN_LINE_ERRORS });
  validator.write(content.toString('utf8'));
  const checked = validator.end();
  if (!checked.ok) {
    const more = checked.errorCount - checked.errors.length;
    throw new CliError(
      `${path}: ${checked.invalidLineCount} invalid line(s) of ${checked.lineCount}; nothing was uploaded`,
      1,
      [...checked.errors.map(formatDatasetError), ...(more > 0 ? [`(and ${more} more)`] : [])],
    );
  }
  try {
    return await ctx.client.upload(basename(absolute), content);
  } catch (err) {
    throw err instanceof ApiRequestError ? withLineErrors(err) : err;
  }
}

/** The edge joins a refused file's line errors into one message; list them one per line. */
function withLineErrors(err: ApiRequestError): ApiRequestError {
  const m = /^(.*? invalid line\(s\) of \d+\.)\s*(.+)$/s.exec(err.message);
  if (err.code !== 'invalid_file' || !m) return err;
  const more = /\s*(\(and \d+ more\))$/.exec(m[2]!);
  const listed = more ? m[2]!.slice(0, more.index) : m[2]!;
  const lines = listed.split(/;\s+(?=(?:line \d+|file): )/);
  return new ApiRequestError(err.status, m[1]!, err.code, [...lines, ...(more ? [more[1]!] : [])]);
}

const upload: Command = {
  summary: 'check and upload a JSONL training file; prints its id',
  args: ['<path.jsonl>'],
  description:
    'Lines are {"messages":[...]}, {"prompt","completion"} or {"text","label"}, one format a file.\nA file with invalid lines is not uploaded; each line\'s error is listed.',
  async run(ctx, input) {
    const file = await uploadFile(ctx, input.args[0]!);
    if (ctx.settings.json) ctx.out(json(file));
    else {
      ctx.out(file.id);
      ctx.note(
        `uploaded ${file.filename}: ${integer(file.line_count)} ${file.format} lines, ${bytes(file.bytes)}`,
      );
    }
    return 0;
  },
};

const list: Command = {
  summary: 'list uploaded training files',
  options: PAGE_OPTIONS,
  async run(ctx, input) {
    const page = await ctx.client.json(listOf(FileObject), 'GET', '/v1/files', { query: pageQuery(input) });
    if (ctx.settings.json) {
      ctx.out(json(page));
      return 0;
    }
    if (page.data.length === 0) {
      ctx.note('no files yet: ladder files upload <path.jsonl>');
      return 0;
    }
    ctx.out(
      table(
        ['ID', 'FILENAME', 'FORMAT', 'LINES', 'SIZE', 'CREATED (UTC)'],
        page.data.map((f) => [
          f.id,
          f.filename,
          // a job's result file is CSV, not a training format
          f.format ?? (f.purpose === 'fine-tune-results' ? 'results (csv)' : '-'),
          integer(f.line_count),
          bytes(f.bytes),
          dateTime(f.created_at),
        ]),
        ['left', 'left', 'left', 'right', 'right'],
      ),
    );
    if (page.has_more) ctx.note(`more: ladder files list --after ${page.data.at(-1)!.id}`);
    return 0;
  },
};

export const files: CommandGroup = { summary: 'training files', commands: { upload, list } };
