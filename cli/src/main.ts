import { parseInput, resolveRoute } from './args.ts';
import { LadderClient } from './client.ts';
import type { CommandContext } from './command.ts';
import { COMMANDS } from './commands/index.ts';
import { CliError, EXIT, formatError, UsageError } from './errors.ts';
import { commandHelp, groupHelp } from './help.ts';
import { type CliIo, processIo } from './io.ts';
import { resolveSettings } from './settings.ts';

/** Runs one command line; the answer is the exit code. Only wiring here. */
export async function main(argv: string[], io: CliIo = processIo()): Promise<number> {
  try {
    const route = resolveRoute(COMMANDS, argv);
    if (route.kind === 'group') {
      // `ladder`, `ladder jobs`: the list of commands, as an answer to --help or as a hint.
      const text = groupHelp(route.group, route.path);
      (route.help ? io.stdout : io.stderr).write(text);
      return route.help ? EXIT.ok : EXIT.usage;
    }
    const { input, globals, help } = parseInput(route.command, route.path, route.rest);
    if (help || route.help) {
      io.stdout.write(commandHelp(route.command, route.path));
      return EXIT.ok;
    }
    const settings = resolveSettings(globals, io);
    const ctx: CommandContext = {
      io,
      settings,
      client: new LadderClient(settings),
      out: (line) => io.stdout.write(`${line}\n`),
      note: (line) => io.stderr.write(`${line}\n`),
    };
    return await route.command.run(ctx, input);
  } catch (err) {
    if (!(err instanceof CliError)) {
      io.stderr.write(`error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      return EXIT.failed;
    }
    io.stderr.write(formatError(err));
    if (err instanceof UsageError) io.stderr.write(`(see: ladder ${[...err.command, ''].join(' ')}--help)\n`);
    return err.exitCode;
  }
}
