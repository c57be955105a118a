/** One thing wrong with a checkpoint: the file it is in and the field (or tensor) it is about. */
export interface CheckpointProblem {
  file: string;
  field: string;
  detail: string;
}

/**
 * Every loader error names the file and the field or tensor, as `<file>: <field> <detail>`, e.g.
 * `/models/x/config.json: architectures[0] 'MistralForCausalLM' is not supported (...)`. Checks that
 * can find several problems (expected tensors) report them all in one error.
 */
export class CheckpointError extends Error {
  override name = 'CheckpointError';
  readonly problems: CheckpointProblem[];

  constructor(problems: CheckpointProblem[], summary?: string) {
    const lines = problems.map((p) => `${p.file}: ${p.field} ${p.detail}`);
    super(summary === undefined ? lines.join('\n') : [summary, ...lines.map((l) => `  ${l}`)].join('\n'));
    this.problems = problems;
  }

  get file(): string {
    return this.problems[0]?.file ?? '';
  }

  get field(): string {
    return this.problems[0]?.field ?? '';
  }
}

/** Throws a CheckpointError with one problem. */
export function fail(file: string, field: string, detail: string): never {
  throw new CheckpointError([{ file, field, detail }]);
}
