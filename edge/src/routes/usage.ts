import { createRoute, z } from '@hono/zod-openapi';
import { MeterEvent, UsageQuery, UsageReport } from '@ladder/schemas';
import { meter, type UsageEvent } from '../durable-objects/tenant-meter.ts';
import { config, priceFor } from '../lib/config.ts';
import { utcDay } from '../lib/ids.ts';
import { bearer, errorResponses, json, router } from '../lib/openapi.ts';

const DAY_MS = 86_400_000;
const PriceSchema = z.object({
  prompt_per_1k: z.number(),
  completion_per_1k: z.number(),
  training_per_1k: z.number(),
});
const round6 = (x: number) => Math.round(x * 1e6) / 1e6;

/** Meter events for one usage event: one per non-zero quantity, each with its own stable id. */
export function meterEvents(tenant: string, e: UsageEvent): MeterEvent[] {
  const timestamp = Math.floor(e.ts / 1000);
  const quantities = [
    ['ladder.prompt_tokens', e.prompt_tokens],
    ['ladder.completion_tokens', e.completion_tokens],
    ['ladder.training_tokens', e.training_tokens],
  ] as const;
  return quantities
    .filter(([, value]) => value > 0)
    .map(([event_name, value]) => ({
      identifier: `${e.id}:${event_name.slice('ladder.'.length)}`,
      event_name,
      timestamp,
      payload: { tenant, model: e.model, value },
    }));
}

export function usageRoutes() {
  const app = router();

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/usage',
      security: bearer,
      description:
        'Metered usage by UTC day and model (adapter), in tokens and in USD from the price table. Default: the last 30 days.',
      request: { query: UsageQuery },
      responses: { 200: json(UsageReport), ...errorResponses },
    }),
    async (c) => {
      const tenant = c.get('tenant').id;
      const q = c.req.valid('query');
      const end = q.end_date ?? utcDay(Date.now());
      const start = q.start_date ?? utcDay(Date.parse(end) - 29 * DAY_MS);
      const cfg = config(c.env);
      const rows = await meter(c.env, tenant).usage(start, end);
      const data = rows.map((r) => {
        const p = priceFor(cfg, r.backbone);
        const cost =
          (r.prompt_tokens * p.prompt_per_1k +
            r.completion_tokens * p.completion_per_1k +
            r.training_tokens * p.training_per_1k) /
          1000;
        return {
          day: r.day,
          model: r.model,
          prompt_tokens: r.prompt_tokens,
          completion_tokens: r.completion_tokens,
          training_tokens: r.training_tokens,
          requests: r.requests,
          cost_usd: round6(cost),
        };
      });
      const total = round6(data.reduce((s, d) => s + d.cost_usd, 0));
      return c.json({ object: 'usage' as const, tenant, data, total_cost_usd: total }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/usage/prices',
      security: bearer,
      description:
        "USD per 1k tokens for each served backbone, as /v1/usage prices its buckets (an adapter costs its backbone's price).",
      responses: {
        200: json(z.object({ object: z.literal('price_table'), data: z.record(z.string(), PriceSchema) })),
        ...errorResponses,
      },
    }),
    (c) => {
      const cfg = config(c.env);
      const data = Object.fromEntries(cfg.backbones.map((b) => [b, priceFor(cfg, b)]));
      return c.json({ object: 'price_table' as const, data }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/usage/meter_events',
      security: bearer,
      description:
        'Usage as meter events (identifier, event_name, timestamp, payload.value) for a billing system; identifiers are stable, so re-ingesting is safe.',
      request: {
        query: z.object({
          since: z.coerce.number().int().min(0).default(0),
          limit: z.coerce.number().int().min(1).max(1000).default(1000),
        }),
      },
      responses: {
        200: json(z.object({ object: z.literal('list'), data: z.array(MeterEvent) })),
        ...errorResponses,
      },
    }),
    async (c) => {
      const tenant = c.get('tenant').id;
      const { since, limit } = c.req.valid('query');
      const events = await meter(c.env, tenant).events(since * 1000, limit);
      return c.json({ object: 'list' as const, data: events.flatMap((e) => meterEvents(tenant, e)) }, 200);
    },
  );
  return app;
}
