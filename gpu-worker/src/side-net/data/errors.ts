import { type DatasetLineError, formatDatasetError } from '@ladder/schemas';

/** One line that cannot become a training example (after it passed the schema): template, length... */
export class ExampleError extends Error {
  constructor(
    readonly line: number,
    readonly field: string | null,
    readonly detail: string,
  ) {
    super(formatDatasetError({ line, field, message: detail }));
    this.name = 'ExampleError';
  }

  get problem(): DatasetLineError {
    return { line: this.line, field: this.field, message: this.detail };
  }
}

/** A training file that trains nothing: the first problems, each with its line and field. */
export class DatasetError extends Error {
  constructor(
    readonly problems: readonly DatasetLineError[],
    /** All problems found (problems holds the first few). */
    readonly problemCount: number = problems.length,
    readonly invalidLineCount: number = new Set(problems.map((p) => p.line)).size,
  ) {
    const more = problemCount > problems.length ? `\n... and ${problemCount - problems.length} more` : '';
    const head =
      invalidLineCount > 0
        ? `dataset refused: ${invalidLineCount} invalid line${invalidLineCount === 1 ? '' : 's'}`
        : 'dataset refused';
    super(`${head}\n${problems.map(formatDatasetError).join('\n')}${more}`);
    this.name = 'DatasetError';
  }
}
