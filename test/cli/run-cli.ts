import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { type CliIo, main, type Output } from '../../cli/index.ts';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: Record<string, string>;
  /** Lines typed into the chat REPL. */
  stdin?: string[];
  /** Make stderr a terminal (progress redrawn in place), `columns` wide. */
  tty?: boolean;
  columns?: number;
  /** Default: a fresh temporary directory, so no .data/dev-tenant.json is found. */
  cwd?: string;
}

/** Runs the CLI's main in-process with captured output, as `ladder <args>` would from a shell. */
export async function runCli(args: string[], options: RunOptions = {}): Promise<CliRun> {
  const capture = (tty: boolean) => {
    const out: Output & { text: string } = {
      text: '',
      write(text: string) {
        out.text += text;
        return true;
      },
      isTTY: tty,
      columns: options.columns ?? 100,
    };
    return out;
  };
  // Removed after the run: nothing of a test's CLI run stays behind in the system's temp folder.
  const cwd = options.cwd ?? mkdtempSync(join(tmpdir(), 'ladder-cli-'));
  const stdout = capture(false);
  const stderr = capture(options.tty ?? false);
  const io: CliIo = {
    stdout,
    stderr,
    stdin: Readable.from((options.stdin ?? []).map((line) => `${line}\n`)),
    env: options.env ?? {},
    cwd,
  };
  try {
    const code = await main(args, io);
    return { code, stdout: stdout.text, stderr: stderr.text };
  } finally {
    if (options.cwd === undefined) rmSync(cwd, { recursive: true, force: true });
  }
}
