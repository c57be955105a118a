import {
  type DatasetFormat,
  type DatasetLineError,
  type DatasetValidationOptions,
  validateDataset,
} from '@ladder/schemas';
import { DatasetError, ExampleError } from './errors.ts';
import { buildExample, collectLabels, type ExampleOptions } from './examples.ts';
import type { DataTokenizer, TrainingExample } from './types.ts';

export interface PrepareOptions
  extends ExampleOptions,
    Pick<DatasetValidationOptions, 'maxBytes' | 'maxLines'> {
  /** Require this line format (e.g. the one the training file had, for a validation file). */
  format?: DatasetFormat;
  /**
   * false (default): any bad line and the file trains nothing (DatasetError lists the first
   * problems). true: bad lines are left out and reported in `skipped`; a file that breaks a
   * size limit or leaves no example is still refused.
   */
  skipInvalid: boolean;
  /** Problems listed in a DatasetError and kept in `skipped`. */
  maxReported: number;
  /** Classification: the label set to hold lines to (a validation file, against training's). */
  labels?: readonly string[];
}

export const PREPARE_DEFAULTS = {
  skipInvalid: false,
  maxReported: 20,
} as const satisfies Partial<PrepareOptions>;

export interface PreparedDataset {
  format: DatasetFormat;
  examples: TrainingExample[];
  /** Classification: the sorted label set (given, or collected from the lines); otherwise null. */
  labels: string[] | null;
  /** The first problems of the lines left out (skipInvalid), by line. */
  skipped: DatasetLineError[];
  skippedLineCount: number;
  stats: {
    /** Non-blank lines in the file. */
    lines: number;
    /** Input positions over all examples (what one epoch feeds the backbone). */
    tokens: number;
    /** Labelled positions over all examples. */
    targets: number;
    truncatedPrompt: number;
    truncatedCompletion: number;
  };
}

const byLine = (a: DatasetLineError, b: DatasetLineError) => (a.line ?? 0) - (b.line ?? 0);

/** A JSONL training file -> tokenized examples, under the bad-lines policy of PrepareOptions. */
export function prepareDataset(
  text: string,
  tokenizer: DataTokenizer,
  options: Partial<PrepareOptions> & Pick<PrepareOptions, 'maxLength'>,
): PreparedDataset {
  const o = { ...PREPARE_DEFAULTS, ...options } satisfies PrepareOptions;
  const checked = validateDataset(text, {
    ...(o.format ? { format: o.format } : {}),
    ...(o.maxBytes !== undefined ? { maxBytes: o.maxBytes } : {}),
    ...(o.maxLines !== undefined ? { maxLines: o.maxLines } : {}),
    maxErrors: o.maxReported,
  });
  if (!checked.ok && (checked.limitExceeded || checked.format === null)) {
    throw new DatasetError(checked.errors, checked.errorCount, checked.invalidLineCount);
  }
  const format = checked.format!;

  let problems: DatasetLineError[] = checked.ok ? [] : [...checked.errors];
  let problemCount = checked.ok ? 0 : checked.errorCount;
  let badLines = checked.ok ? 0 : checked.invalidLineCount;
  const report = (p: DatasetLineError) => {
    problems.push(p);
    problemCount++;
    badLines++;
  };

  const labels = format === 'classification' ? [...(o.labels ?? collectLabels(checked.lines))].sort() : null;
  const known = new Set(labels);
  const examples: TrainingExample[] = [];
  for (const record of checked.lines) {
    if (o.labels && record.format === 'classification' && !known.has(record.value.label)) {
      report({
        line: record.line,
        field: 'label',
        message: `'${record.value.label}' is not one of the labels (${labels!.join(', ')})`,
      });
      continue;
    }
    try {
      examples.push(buildExample(tokenizer, record, o));
    } catch (e) {
      if (!(e instanceof ExampleError)) throw e;
      report(e.problem);
    }
  }
  problems = problems.sort(byLine).slice(0, o.maxReported);

  if (problemCount > 0 && !o.skipInvalid) throw new DatasetError(problems, problemCount, badLines);
  if (examples.length === 0) {
    const none = { line: null, field: null, message: 'no usable examples' };
    throw new DatasetError([none, ...problems].slice(0, o.maxReported), problemCount + 1, badLines);
  }
  if (labels && !o.labels && labels.length < 2) {
    const one = {
      line: null,
      field: null,
      message: `classification needs at least 2 labels; found ${labels.join(', ')}`,
    };
    throw new DatasetError([one], 1, 0);
  }
  return {
    format,
    examples,
    labels,
    skipped: problems,
    skippedLineCount: badLines,
    stats: statsOf(checked.lineCount, examples),
  };
}

function statsOf(lines: number, examples: readonly TrainingExample[]): PreparedDataset['stats'] {
  const stats = { lines, tokens: 0, targets: 0, truncatedPrompt: 0, truncatedCompletion: 0 };
  for (const e of examples) {
    stats.tokens += e.inputIds.length;
    stats.targets += e.targetCount;
    if (e.truncated === 'prompt') stats.truncatedPrompt++;
    if (e.truncated === 'completion') stats.truncatedCompletion++;
  }
  return stats;
}
