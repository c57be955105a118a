import type { CommandGroup } from '../command.ts';
import { admin } from './admin.ts';
import { chat } from './chat.ts';
import { files } from './files.ts';
import { jobs } from './jobs.ts';
import { models } from './models.ts';
import { usage } from './usage.ts';

/** Every command, by its words: `ladder jobs create` is COMMANDS.commands.jobs.commands.create. */
export const COMMANDS: CommandGroup = {
  summary: 'ladder',
  commands: { files, jobs, models, chat, usage, admin },
};
