import { listOf, ModelObject } from '@ladder/schemas';
import { z } from 'zod';
import type { Command, CommandGroup } from '../command.ts';
import { dateTime, json, table } from '../format.ts';

const Deleted = z.object({ id: z.string(), deleted: z.boolean() });

const list: Command = {
  summary: 'list the backbones and your adapters',
  async run(ctx) {
    const models = await ctx.client.json(listOf(ModelObject), 'GET', '/v1/models');
    if (ctx.settings.json) {
      ctx.out(json(models));
      return 0;
    }
    ctx.out(
      table(
        ['ID', 'KIND', 'BACKBONE', 'CREATED (UTC)'],
        models.data.map((m) => [m.id, m.kind, m.backbone, dateTime(m.created)]),
      ),
    );
    return 0;
  },
};

const remove: Command = {
  summary: 'delete one of your adapters',
  args: ['<model>'],
  async run(ctx, input) {
    const model = input.args[0]!;
    const answer = await ctx.client.json(Deleted, 'DELETE', `/v1/models/${encodeURIComponent(model)}`);
    if (ctx.settings.json) ctx.out(json(answer));
    else ctx.out(`deleted ${answer.id}`);
    return 0;
  },
};

export const models: CommandGroup = { summary: 'models', commands: { list, delete: remove } };
