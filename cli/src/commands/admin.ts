import { ApiKey, Tenant } from '@ladder/schemas';
import { type Command, type CommandGroup, stringOption } from '../command.ts';
import { json } from '../format.ts';

const createTenant: Command = {
  summary: 'create a tenant; prints its id',
  args: ['<name>'],
  async run(ctx, input) {
    const tenant = await ctx.client.json(Tenant, 'POST', '/admin/v1/tenants', {
      auth: 'admin',
      body: { name: input.args[0]! },
    });
    if (ctx.settings.json) ctx.out(json(tenant));
    else {
      ctx.out(tenant.id);
      ctx.note(`created tenant ${tenant.name}; give it a key: ladder admin key create ${tenant.id}`);
    }
    return 0;
  },
};

const createKey: Command = {
  summary: 'create an API key for a tenant; prints the key (shown only once)',
  args: ['<tenant>'],
  options: { name: { type: 'string', value: '<name>', help: 'a label for the key' } },
  async run(ctx, input) {
    const tenant = input.args[0]!;
    const key = await ctx.client.json(
      ApiKey,
      'POST',
      `/admin/v1/tenants/${encodeURIComponent(tenant)}/keys`,
      {
        auth: 'admin',
        body: { name: stringOption(input, 'name') ?? '' },
      },
    );
    if (ctx.settings.json) ctx.out(json(key));
    else {
      ctx.out(key.key ?? '');
      ctx.note(
        `key ${key.id} for tenant ${key.tenant}: use it as --api-key or LADDER_API_KEY; it is not shown again`,
      );
    }
    return 0;
  },
};

export const admin: CommandGroup = {
  summary: 'tenants and keys (needs the admin token)',
  commands: {
    tenant: { summary: 'tenants', commands: { create: createTenant } },
    key: { summary: 'API keys', commands: { create: createKey } },
  },
};
