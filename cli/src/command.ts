import type { LadderClient } from './client.ts';
import { UsageError } from './errors.ts';
import type { CliIo } from './io.ts';
import type { Settings } from './settings.ts';

/** One option of a command, for util.parseArgs and for its help. */
export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  /** The value's placeholder in help: `--epochs <n>`. */
  value?: string;
  help: string;
}

export interface CommandInput {
  /** The command's positional arguments, after the command words. */
  args: string[];
  options: Readonly<Record<string, string | boolean | undefined>>;
  /** The command words (`['jobs', 'create']`), for messages. */
  path: string[];
}

export interface CommandContext {
  io: CliIo;
  settings: Settings;
  client: LadderClient;
  /** A line of results on stdout. */
  out(line: string): void;
  /** A line of progress or notes on stderr. */
  note(line: string): void;
}

export interface Command {
  summary: string;
  /** Positionals: `<name>` required, `[name]` optional, `[name...]` the rest. */
  args?: string[];
  /** Required options, shown in the usage line: `--file <id|path>`. */
  requires?: string[];
  options?: Record<string, OptionSpec>;
  /** More text for the command's help. */
  description?: string;
  run(ctx: CommandContext, input: CommandInput): Promise<number>;
}

export interface CommandGroup {
  summary: string;
  commands: Record<string, CommandNode>;
}

export type CommandNode = Command | CommandGroup;

export const isGroup = (node: CommandNode): node is CommandGroup => 'commands' in node;

export function stringOption(input: CommandInput, name: string): string | undefined {
  const value = input.options[name];
  return typeof value === 'string' ? value : undefined;
}

export function requiredOption(input: CommandInput, name: string): string {
  const value = stringOption(input, name);
  if (value === undefined) throw new UsageError(`--${name} is required`, input.path);
  return value;
}

export function numberOption(
  input: CommandInput,
  name: string,
  range: { min?: number; max?: number; integer?: boolean } = {},
): number | undefined {
  const raw = stringOption(input, name);
  if (raw === undefined) return undefined;
  const n = Number(raw);
  const { min = -Infinity, max = Infinity, integer = false } = range;
  if (raw.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min || n > max) {
    const kind = integer ? 'an integer' : 'a number';
    const bounds = [min > -Infinity ? `>= ${min}` : '', max < Infinity ? `<= ${max}` : '']
      .filter(Boolean)
      .join(' and ');
    throw new UsageError(`--${name} must be ${kind}${bounds ? ` ${bounds}` : ''}, not '${raw}'`, input.path);
  }
  return n;
}
