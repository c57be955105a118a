/** A failure the CLI reports as `error: <message>` and leaves with `exitCode`. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
    /** Further lines printed under the message (a refused file's line errors). */
    readonly details: string[] = [],
  ) {
    super(message);
  }
}

/** Wrong arguments: exit code 2, with a pointer to the command's help. */
export class UsageError extends CliError {
  constructor(
    message: string,
    /** The command words, for `ladder <command> --help`. */
    readonly command: string[] = [],
  ) {
    super(message, 2);
  }
}

/** The API answered with an error (`{ error: { message, type, param, code } }`). */
export class ApiRequestError extends CliError {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string,
    details: string[] = [],
  ) {
    super(message, 1, details);
  }
}

/** The exit codes, documented in `ladder --help`. */
export const EXIT = { ok: 0, failed: 1, usage: 2, cancelled: 3 } as const;

/** `error: <message> (<code>)` and any detail lines under it, as printed on stderr. */
export function formatError(err: CliError): string {
  const code = err instanceof ApiRequestError ? ` (${err.code})` : '';
  return `${[`error: ${err.message}${code}`, ...err.details.map((d) => `  ${d}`)].join('\n')}\n`;
}
