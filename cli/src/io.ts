/** Where the CLI writes and reads: the process's streams, or a test's captures. */
export interface Output {
  write(text: string): unknown;
  /** A terminal: progress is redrawn in place and the chat REPL shows prompts. */
  isTTY?: boolean;
  columns?: number;
}

export interface CliIo {
  /** Results: ids, tables, model names, the chat's answer. */
  stdout: Output;
  /** Progress, notes and errors. */
  stderr: Output;
  /** The chat REPL's input. */
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  env: Readonly<Record<string, string | undefined>>;
  /** Relative paths and the search for .data/dev-tenant.json start here. */
  cwd: string;
}

export function processIo(): CliIo {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    env: process.env,
    cwd: process.cwd(),
  };
}
