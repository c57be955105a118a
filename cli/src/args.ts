import { parseArgs } from 'node:util';
import { type Command, type CommandGroup, type CommandInput, isGroup, type OptionSpec } from './command.ts';
import { UsageError } from './errors.ts';
import type { GlobalFlags } from './settings.ts';

/** Options every command takes; they may also come before the command words. */
export const GLOBAL_OPTIONS: Record<string, OptionSpec> = {
  'base-url': {
    type: 'string',
    value: '<url>',
    help: 'the edge (LADDER_BASE_URL; default .data/dev-tenant.json, else http://127.0.0.1:8787)',
  },
  'api-key': {
    type: 'string',
    value: '<key>',
    help: "a tenant's API key (LADDER_API_KEY; default the key in .data/dev-tenant.json)",
  },
  'admin-token': { type: 'string', value: '<token>', help: 'for admin commands (LADDER_ADMIN_TOKEN)' },
  json: { type: 'boolean', help: "print the API's JSON instead of tables" },
  help: { type: 'boolean', short: 'h', help: 'show help' },
};

export type Route =
  | { kind: 'command'; command: Command; path: string[]; rest: string[]; help: boolean }
  | { kind: 'group'; group: CommandGroup; path: string[]; help: boolean };

/**
 * Finds the command words in argv (global options may come before them) and hands the rest,
 * options and positionals, to the command.
 */
export function resolveRoute(root: CommandGroup, argv: string[]): Route {
  const takesValue = new Set(
    Object.entries(GLOBAL_OPTIONS)
      .filter(([, o]) => o.type === 'string')
      .map(([name]) => `--${name}`),
  );
  let group = root;
  const path: string[] = [];
  const rest: string[] = [];
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    if (token === '-h' || token === '--help' || (token === 'help' && path.length === 0)) {
      help = true;
      continue;
    }
    if (token.startsWith('-')) {
      rest.push(token);
      if (takesValue.has(token) && i + 1 < argv.length) rest.push(argv[++i]!);
      continue;
    }
    const node = group.commands[token];
    if (!node) {
      const what = path.length
        ? `'${token}' is not a ${path.join(' ')} command`
        : `unknown command '${token}'`;
      throw new UsageError(what, path);
    }
    path.push(token);
    if (!isGroup(node))
      return { kind: 'command', command: node, path, rest: [...rest, ...argv.slice(i + 1)], help };
    group = node;
  }
  return { kind: 'group', group, path, help };
}

/** Parses a command's options and positionals strictly; the global ones are split out. */
export function parseInput(
  command: Command,
  path: string[],
  tokens: string[],
): {
  input: CommandInput;
  globals: GlobalFlags;
  help: boolean;
} {
  const specs = { ...GLOBAL_OPTIONS, ...command.options };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: tokens,
      options: Object.fromEntries(
        Object.entries(specs).map(([name, o]) => [
          name,
          o.short ? { type: o.type, short: o.short } : { type: o.type },
        ]),
      ),
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    // parseArgs explains at length; its first sentence says what was wrong.
    throw new UsageError((err as Error).message.split('. ')[0]!.replace(/\.$/, ''), path);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  const help = values.help === true;
  if (!help) checkPositionals(command, path, parsed.positionals);
  const str = (name: string) => (typeof values[name] === 'string' ? (values[name] as string) : undefined);
  return {
    input: { args: parsed.positionals, options: values, path },
    globals: {
      baseUrl: str('base-url'),
      apiKey: str('api-key'),
      adminToken: str('admin-token'),
      json: values.json === true,
    },
    help,
  };
}

function checkPositionals(command: Command, path: string[], positionals: string[]): void {
  const specs = command.args ?? [];
  const required = specs.filter((a) => a.startsWith('<'));
  const variadic = specs.some((a) => a.endsWith('...]'));
  if (positionals.length < required.length)
    throw new UsageError(`missing ${required.slice(positionals.length).join(' ')}`, path);
  if (!variadic && positionals.length > specs.length)
    throw new UsageError(`unexpected argument '${positionals[specs.length]}'`, path);
}
