import { GLOBAL_OPTIONS } from './args.ts';
import { type Command, type CommandGroup, isGroup, type OptionSpec } from './command.ts';

const INTRO = 'ladder: upload datasets, fine-tune side-network adapters, chat with them, read usage.';

const EXIT_CODES = [
  'Exit codes: 0 done (a watched job succeeded), 1 error or failed job, 2 bad arguments, 3 job cancelled.',
];

/** Help for the whole CLI or a group of commands: every command under it, one line each. */
export function groupHelp(group: CommandGroup, path: string[]): string {
  const leaves = listCommands(group, path);
  const width = Math.max(...leaves.map((l) => l.usage.length));
  const lines = [
    ...(path.length ? [] : [INTRO, '']),
    `Usage: ladder ${path.length ? `${path.join(' ')} ` : ''}<command> [options]`,
    '',
    'Commands:',
    ...leaves.map((l) => `  ${l.usage.padEnd(width)}  ${l.summary}`),
    '',
    'Global options:',
    ...optionLines(GLOBAL_OPTIONS),
    '',
    `Run \`ladder ${path.length ? `${path.join(' ')} ` : ''}<command> --help\` for a command's options.`,
    ...(path.length ? [] : EXIT_CODES),
  ];
  return `${lines.join('\n')}\n`;
}

export function commandHelp(command: Command, path: string[]): string {
  const lines = [
    `Usage: ${usageLine(command, path)}`,
    '',
    command.summary,
    ...(command.description ? ['', command.description] : []),
    ...(command.options ? ['', 'Options:', ...optionLines(command.options)] : []),
    '',
    'Global options:',
    ...optionLines(GLOBAL_OPTIONS),
  ];
  return `${lines.join('\n')}\n`;
}

function usageLine(command: Command, path: string[]): string {
  return ['ladder', ...path, ...synopsis(command), ...(command.options ? ['[options]'] : [])].join(' ');
}

function synopsis(command: Command): string[] {
  return [...(command.args ?? []), ...(command.requires ?? [])];
}

function listCommands(group: CommandGroup, path: string[]): { usage: string; summary: string }[] {
  return Object.entries(group.commands).flatMap(([name, node]) =>
    isGroup(node)
      ? listCommands(node, [...path, name])
      : [{ usage: [...path, name, ...synopsis(node)].join(' '), summary: node.summary }],
  );
}

function optionLines(options: Record<string, OptionSpec>): string[] {
  const flags = Object.entries(options).map(([name, o]) =>
    [o.short ? `-${o.short}, ` : '', `--${name}`, o.value ? ` ${o.value}` : ''].join(''),
  );
  const width = Math.max(...flags.map((f) => f.length));
  return Object.values(options).map((o, i) => `  ${flags[i]!.padEnd(width)}  ${o.help}`);
}
