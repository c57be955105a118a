import { UsageReport } from '@ladder/schemas';
import { type Command, type CommandInput, stringOption } from '../command.ts';
import { UsageError } from '../errors.ts';
import { integer, json, table, usd } from '../format.ts';

function day(input: CommandInput, name: string): string | undefined {
  const value = stringOption(input, name);
  if (value !== undefined && !/^\d{4}-\d{2}-\d{2}$/.test(value))
    throw new UsageError(`--${name} must be a day as YYYY-MM-DD, not '${value}'`, input.path);
  return value;
}

export const usage: Command = {
  summary: 'tokens and cost by day and model',
  description: 'Days are UTC and inclusive; without --from/--to, the last 30 days.',
  options: {
    from: { type: 'string', value: '<YYYY-MM-DD>', help: 'first day' },
    to: { type: 'string', value: '<YYYY-MM-DD>', help: 'last day' },
  },
  async run(ctx, input) {
    const query = { start_date: day(input, 'from'), end_date: day(input, 'to') };
    const report = await ctx.client.json(UsageReport, 'GET', '/v1/usage', { query });
    if (ctx.settings.json) {
      ctx.out(json(report));
      return 0;
    }
    if (report.data.length === 0) {
      ctx.out('no usage in this period');
      return 0;
    }
    const sum = (key: 'prompt_tokens' | 'completion_tokens' | 'training_tokens' | 'requests') =>
      integer(report.data.reduce((s, b) => s + b[key], 0));
    ctx.out(
      table(
        ['DAY', 'MODEL', 'PROMPT', 'COMPLETION', 'TRAINING', 'REQUESTS', 'COST'],
        [
          ...report.data.map((b) => [
            b.day,
            b.model,
            integer(b.prompt_tokens),
            integer(b.completion_tokens),
            integer(b.training_tokens),
            integer(b.requests),
            usd(b.cost_usd),
          ]),
          [
            'total',
            '',
            sum('prompt_tokens'),
            sum('completion_tokens'),
            sum('training_tokens'),
            sum('requests'),
            usd(report.total_cost_usd),
          ],
        ],
        ['left', 'left', 'right', 'right', 'right', 'right', 'right'],
      ),
    );
    return 0;
  },
};
