import type { MiddlewareHandler } from 'hono';
import { meter, type RateDecision } from '../../durable-objects/tenant-meter.ts';
import { ApiException } from '../../lib/errors.ts';
import type { AppEnv } from '../../lib/types.ts';

/** OpenAI's header set: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`. */
export function rateLimitHeaders(d: RateDecision): Record<string, string> {
  return {
    'x-ratelimit-limit-requests': String(d.requests.limit),
    'x-ratelimit-remaining-requests': String(d.requests.remaining),
    'x-ratelimit-reset-requests': `${d.requests.resetS}s`,
    'x-ratelimit-limit-tokens': String(d.tokens.limit),
    'x-ratelimit-remaining-tokens': String(d.tokens.remaining),
    'x-ratelimit-reset-tokens': `${d.tokens.resetS}s`,
  };
}

/**
 * Per-tenant requests/min on every authenticated route; routes that spend tokens
 * (`spendsTokens`) are also refused once the minute's token budget is gone. Runs after tenantAuth.
 */
export function rateLimit(opts: { spendsTokens: (path: string) => boolean }): MiddlewareHandler<AppEnv> {
  return async function rateLimit(c, next) {
    const tenant = c.get('tenant');
    const d = await meter(c.env, tenant.id).admit(tenant.limits, Date.now(), opts.spendsTokens(c.req.path));
    const headers = rateLimitHeaders(d);
    if (!d.ok) {
      const retryAfter = String(d.limitedBy === 'tokens' ? d.tokens.resetS : d.requests.resetS);
      throw new ApiException(
        429,
        `Rate limit reached for ${d.limitedBy} per minute: limit ${d.limitedBy === 'tokens' ? d.tokens.limit : d.requests.limit}. Retry in ${retryAfter}s.`,
        'requests',
        'rate_limit_exceeded',
        null,
        { ...headers, 'retry-after': retryAfter },
      );
    }
    await next();
    // After the handler: a raw Response (a relayed stream) would drop headers set before it.
    for (const [k, v] of Object.entries(headers)) c.header(k, v);
  };
}
