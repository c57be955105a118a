import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { FineTuningJob, listOf, METHOD_TYPES, ModelObject, parseFineTuningJobRequest } from '@ladder/schemas';
import {
  type Command,
  type CommandContext,
  type CommandGroup,
  type CommandInput,
  numberOption,
  requiredOption,
  stringOption,
} from '../command.ts';
import { CliError, UsageError } from '../errors.ts';
import { dateTime, integer, json, table } from '../format.ts';
import { watchJob } from '../watch.ts';
import { PAGE_OPTIONS, pageQuery, uploadFile } from './files.ts';

const jobPath = (id: string) => `/v1/fine_tuning/jobs/${encodeURIComponent(id)}`;

/** A file id, or a local JSONL path (uploaded first). */
async function fileId(ctx: CommandContext, value: string): Promise<string> {
  const looksLikePath = /[/\\]|\.jsonl?$/i.test(value);
  if (!existsSync(resolve(ctx.io.cwd, value))) {
    if (looksLikePath) throw new CliError(`cannot read ${value}: no such file`);
    return value;
  }
  const file = await uploadFile(ctx, value);
  ctx.note(`uploaded ${value} as ${file.id} (${integer(file.line_count)} ${file.format} lines)`);
  return file.id;
}

/** The platform's first backbone, when --model is not given. */
async function defaultBackbone(ctx: CommandContext): Promise<string> {
  const models = await ctx.client.json(listOf(ModelObject), 'GET', '/v1/models');
  const backbone = models.data.find((m) => m.kind === 'backbone');
  if (!backbone) throw new CliError('the platform lists no backbone to train on; pass --model');
  return backbone.id;
}

/** `'auto'` or a number; its range is the request schema's to check. */
function autoOrNumber(input: CommandInput, name: string): number | 'auto' | undefined {
  const raw = stringOption(input, name);
  if (raw === undefined || raw === 'auto') return raw;
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(n))
    throw new UsageError(`--${name} must be 'auto' or a number, not '${raw}'`, input.path);
  return n;
}

/** The request fields the options set, for naming an option in a refusal. */
const OPTION_OF: Record<string, string> = {
  n_epochs: '--epochs',
  batch_size: '--batch-size',
  learning_rate_multiplier: '--lr-multiplier',
  learning_rate: '--lr',
  suffix: '--suffix',
  seed: '--seed',
  type: '--method',
};

/** The body in OpenAI's shape (`method: {type, <type>: {hyperparameters}}`), checked as the edge checks it. */
function requestBody(input: CommandInput, model: string, trainingFile: string, validationFile?: string) {
  const type = stringOption(input, 'method') ?? 'supervised';
  if (!(METHOD_TYPES as readonly string[]).includes(type))
    throw new UsageError(`--method must be ${METHOD_TYPES.join(', ')}, not '${type}'`, input.path);
  const given = {
    n_epochs: autoOrNumber(input, 'epochs'),
    batch_size: autoOrNumber(input, 'batch-size'),
    learning_rate_multiplier: autoOrNumber(input, 'lr-multiplier'),
    learning_rate: numberOption(input, 'lr', { min: 0, max: 1 }),
  };
  const hyperparameters = Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined));
  const body = {
    model,
    training_file: trainingFile,
    ...(validationFile === undefined ? {} : { validation_file: validationFile }),
    method: { type, [type]: { hyperparameters } },
    suffix: stringOption(input, 'suffix'),
    seed: numberOption(input, 'seed', { min: 0, integer: true }),
  };
  const parsed = parseFineTuningJobRequest(body);
  if (!parsed.ok) {
    const field = parsed.refusal.param?.split('.').at(-1) ?? '';
    const option = OPTION_OF[field];
    const why = parsed.refusal.message.replace(/^[\w.]+: /, '');
    throw new UsageError(option ? `${option}: ${why}` : parsed.refusal.message, input.path);
  }
  return body;
}

const create: Command = {
  summary: 'start a fine-tuning job; prints its id (--watch follows it)',
  requires: ['--file <id|path>'],
  options: {
    file: {
      type: 'string',
      value: '<id|path>',
      help: 'training file: an uploaded id, or a .jsonl path to upload',
    },
    'validation-file': { type: 'string', value: '<id|path>', help: 'validation file, id or path' },
    model: {
      type: 'string',
      value: '<backbone>',
      help: "backbone to train on (default: the platform's first)",
    },
    method: {
      type: 'string',
      value: '<supervised|lst|xladder>',
      help: 'supervised (the default, an LST side net), lst, or xladder',
    },
    epochs: { type: 'string', value: '<n|auto>', help: 'epochs (default auto: from the file size)' },
    'batch-size': {
      type: 'string',
      value: '<n|auto>',
      help: 'examples per optimizer step (default auto: about 0.2% of the file)',
    },
    'lr-multiplier': {
      type: 'string',
      value: '<x|auto>',
      help: "times the side net's base learning rate (default auto)",
    },
    lr: { type: 'string', value: '<x>', help: 'an absolute learning rate instead of the multiplier' },
    suffix: { type: 'string', value: '<name>', help: "in the model's name: ft:<backbone>:<suffix>:<id>" },
    seed: { type: 'string', value: '<n>', help: 'training seed' },
    'idempotency-key': {
      type: 'string',
      value: '<key>',
      help: 'the same key and options answer the same job (default: a new key)',
    },
    watch: { type: 'boolean', help: 'follow the job until it ends, as `ladder jobs watch`' },
  },
  async run(ctx, input) {
    const training = requiredOption(input, 'file');
    const validation = stringOption(input, 'validation-file');
    // Check the options with stand-in ids first, so a mistake costs no upload.
    requestBody(input, 'model', 'file');
    const body = requestBody(
      input,
      stringOption(input, 'model') ?? (await defaultBackbone(ctx)),
      await fileId(ctx, training),
      validation === undefined ? undefined : await fileId(ctx, validation),
    );
    const job = await ctx.client.json(FineTuningJob, 'POST', '/v1/fine_tuning/jobs', {
      body,
      headers: { 'idempotency-key': stringOption(input, 'idempotency-key') ?? randomUUID() },
    });
    if (ctx.settings.json) ctx.out(json(job));
    else {
      ctx.out(job.id);
      ctx.note(`created ${job.id}: ${job.method.type} on ${job.model}, ${job.status.replace('_', ' ')}`);
    }
    if (input.options.watch !== true) {
      ctx.note(`follow it: ladder jobs watch ${job.id}`);
      return 0;
    }
    return watchJob(ctx, job.id);
  },
};

const list: Command = {
  summary: 'list fine-tuning jobs',
  options: PAGE_OPTIONS,
  async run(ctx, input) {
    const page = await ctx.client.json(listOf(FineTuningJob), 'GET', '/v1/fine_tuning/jobs', {
      query: pageQuery(input),
    });
    if (ctx.settings.json) {
      ctx.out(json(page));
      return 0;
    }
    if (page.data.length === 0) {
      ctx.note('no jobs yet: ladder jobs create --file <path.jsonl>');
      return 0;
    }
    ctx.out(
      table(
        ['ID', 'STATUS', 'METHOD', 'MODEL', 'FINE-TUNED MODEL', 'CREATED (UTC)'],
        page.data.map((j) => [
          j.id,
          j.status,
          j.method.type,
          j.model,
          j.fine_tuned_model ?? '-',
          dateTime(j.created_at),
        ]),
      ),
    );
    if (page.has_more) ctx.note(`more: ladder jobs list --after ${page.data.at(-1)!.id}`);
    return 0;
  },
};

const get: Command = {
  summary: "show a job's status, method and result",
  args: ['<job-id>'],
  async run(ctx, input) {
    const job = await ctx.client.json(FineTuningJob, 'GET', jobPath(input.args[0]!));
    if (ctx.settings.json) {
      ctx.out(json(job));
      return 0;
    }
    const hp = job.hyperparameters;
    const rows: [string, string][] = [
      ['id', job.id],
      ['status', job.status],
      ['model', job.model],
      [
        'method',
        `${job.method.type} (epochs ${hp.n_epochs}, batch size ${hp.batch_size}, learning rate multiplier ${hp.learning_rate_multiplier})`,
      ],
      ['training file', job.training_file],
      ['validation file', job.validation_file ?? '-'],
      ['fine-tuned model', job.fine_tuned_model ?? '-'],
      ['trained tokens', job.trained_tokens === null ? '-' : integer(job.trained_tokens)],
      ['result files', job.result_files.join(', ') || '-'],
      ['attempt', String(job.attempt)],
      ['created (UTC)', dateTime(job.created_at)],
      ['finished (UTC)', dateTime(job.finished_at)],
      ...(job.error ? [['error', `${job.error.message} (${job.error.code})`] as [string, string]] : []),
    ];
    const width = Math.max(...rows.map(([k]) => k.length));
    for (const [k, v] of rows) ctx.out(`${k.padEnd(width)}  ${v}`);
    return 0;
  },
};

/** cancel, pause, resume: a POST that answers the job. */
function control(action: 'cancel' | 'pause' | 'resume', summary: string): Command {
  return {
    summary,
    args: ['<job-id>'],
    async run(ctx, input) {
      const job = await ctx.client.json(FineTuningJob, 'POST', `${jobPath(input.args[0]!)}/${action}`);
      if (ctx.settings.json) ctx.out(json(job));
      else ctx.out(`${job.id} ${job.status}`);
      return 0;
    },
  };
}

const cancel = control('cancel', 'cancel a job that has not finished');
const pause = control('pause', 'pause a running job (its worker checkpoints and stops)');
const resume = control('resume', 'resume a paused job from its last checkpoint');

const watch: Command = {
  summary: 'follow a job with a progress bar; prints the model when it succeeds',
  args: ['<job-id>'],
  description:
    'On a terminal one line is redrawn in place (step/total, loss, tokens/s, eta); otherwise one line per event.\nExit code 0 succeeded, 1 failed, 3 cancelled. With --json, the events as JSON lines.',
  run: (ctx, input) => watchJob(ctx, input.args[0]!),
};

export const jobs: CommandGroup = {
  summary: 'fine-tuning jobs',
  commands: { create, list, get, cancel, pause, resume, watch },
};
