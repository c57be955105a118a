import { DurableObject } from 'cloudflare:workers';
import type { TenantLimits } from '@ladder/schemas';
import { utcDay } from '../lib/ids.ts';

/** One billable event. `id` is deterministic (request id, job id), so a redelivery is a no-op. */
export interface UsageEvent {
  id: string;
  kind: 'inference' | 'training';
  /** The public model id the tenant used (a backbone name or `ft:...`). */
  model: string;
  backbone: string;
  /** Unix milliseconds. */
  ts: number;
  prompt_tokens: number;
  completion_tokens: number;
  training_tokens: number;
}

export interface UsageRow {
  day: string;
  model: string;
  backbone: string;
  prompt_tokens: number;
  completion_tokens: number;
  training_tokens: number;
  requests: number;
}

/** A rate-limit verdict, with what the `x-ratelimit-*` headers report. */
export interface RateDecision {
  ok: boolean;
  /** Which limit refused the request. */
  limitedBy: 'requests' | 'tokens' | null;
  requests: { limit: number; remaining: number; resetS: number };
  tokens: { limit: number; remaining: number; resetS: number };
}

const WINDOW_MS = 60_000;

/**
 * Per tenant (one object per tenant id): the usage meter and the rate limiter. A Durable Object
 * is single-threaded, so "insert unless seen" and "count, compare, increment" are atomic here
 * without any locking; SQLite storage makes both survive eviction.
 */
export class TenantMeter extends DurableObject<Env> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`CREATE TABLE IF NOT EXISTS usage_events (
      id TEXT PRIMARY KEY, kind TEXT NOT NULL, model TEXT NOT NULL, backbone TEXT NOT NULL,
      day TEXT NOT NULL, ts INTEGER NOT NULL,
      prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, training_tokens INTEGER NOT NULL)`);
    this.sql.exec('CREATE INDEX IF NOT EXISTS usage_day ON usage_events(day, model)');
    this.sql.exec(
      'CREATE TABLE IF NOT EXISTS rate_windows (window INTEGER PRIMARY KEY, requests INTEGER NOT NULL, tokens INTEGER NOT NULL)',
    );
    this.sql.exec(
      'CREATE TABLE IF NOT EXISTS token_reservations (id TEXT PRIMARY KEY, window INTEGER NOT NULL, tokens INTEGER NOT NULL)',
    );
  }

  /**
   * Records the event unless its id was seen before; `recorded` says which. An inference event
   * settles the reservation of the same id (see `reserve`): the estimate leaves the window it was
   * put in and the real tokens count against the window the work ended in (`now`), not the one
   * the request started in.
   */
  record(event: UsageEvent, now = Date.now()): { recorded: boolean } {
    const cursor = this.sql.exec(
      `INSERT OR IGNORE INTO usage_events
        (id, kind, model, backbone, day, ts, prompt_tokens, completion_tokens, training_tokens)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      event.id,
      event.kind,
      event.model,
      event.backbone,
      utcDay(event.ts),
      event.ts,
      event.prompt_tokens,
      event.completion_tokens,
      event.training_tokens,
    );
    const recorded = cursor.rowsWritten > 0;
    if (recorded && event.kind === 'inference') {
      this.releaseReservation(event.id);
      this.addTokens(event.prompt_tokens + event.completion_tokens, now);
    }
    return { recorded };
  }

  /**
   * Reserves `estimate` tokens of the current window for request `id` before its work starts,
   * refused when the window's tokens, reservations of requests still running included, already
   * reach the limit. Check and increment happen in this single-threaded object, so parallel
   * requests see each other's reservations. `record` (or `release`) settles it.
   */
  reserve(
    id: string,
    limits: TenantLimits,
    now: number,
    estimate: number,
  ): RateDecision['tokens'] & { ok: boolean } {
    const window = Math.floor(now / WINDOW_MS);
    const used =
      this.sql
        .exec<{ tokens: number }>('SELECT tokens FROM rate_windows WHERE window = ?', window)
        .toArray()[0]?.tokens ?? 0;
    const resetS = Math.max(1, Math.ceil(((window + 1) * WINDOW_MS - now) / 1000));
    const ok = used < limits.tokens_per_min;
    if (ok) {
      this.addTokens(estimate, now);
      this.sql.exec(
        'INSERT OR REPLACE INTO token_reservations (id, window, tokens) VALUES (?, ?, ?)',
        id,
        window,
        estimate,
      );
      this.sql.exec('DELETE FROM token_reservations WHERE window < ?', window - 1);
    }
    return {
      ok,
      limit: limits.tokens_per_min,
      remaining: Math.max(0, limits.tokens_per_min - used - (ok ? estimate : 0)),
      resetS,
    };
  }

  /** Gives back a reservation whose request did no billable work (the worker refused it). */
  release(id: string): void {
    this.releaseReservation(id);
  }

  private releaseReservation(id: string): void {
    const r = this.sql
      .exec<{ window: number; tokens: number }>(
        'SELECT window, tokens FROM token_reservations WHERE id = ?',
        id,
      )
      .toArray()[0];
    if (!r) return;
    this.sql.exec('DELETE FROM token_reservations WHERE id = ?', id);
    this.sql.exec('UPDATE rate_windows SET tokens = MAX(0, tokens - ?) WHERE window = ?', r.tokens, r.window);
  }

  /** Quantities by day and model, days inclusive (`YYYY-MM-DD`). */
  usage(startDay: string, endDay: string): UsageRow[] {
    return this.sql
      .exec<UsageRow & Record<string, SqlStorageValue>>(
        `SELECT day, model, backbone, SUM(prompt_tokens) AS prompt_tokens,
           SUM(completion_tokens) AS completion_tokens, SUM(training_tokens) AS training_tokens,
           SUM(CASE WHEN kind = 'inference' THEN 1 ELSE 0 END) AS requests
         FROM usage_events WHERE day >= ? AND day <= ? GROUP BY day, model, backbone ORDER BY day, model`,
        startDay,
        endDay,
      )
      .toArray();
  }

  /** Raw events in time order, for the meter-event export. */
  events(sinceMs: number, limit: number): UsageEvent[] {
    return this.sql
      .exec<UsageEvent & Record<string, SqlStorageValue>>(
        `SELECT id, kind, model, backbone, ts, prompt_tokens, completion_tokens, training_tokens
         FROM usage_events WHERE ts >= ? ORDER BY ts, id LIMIT ?`,
        sinceMs,
        limit,
      )
      .toArray();
  }

  /**
   * Counts one request against the per-minute window (fixed windows, aligned to the minute).
   * `needsTokens`: the route spends tokens, so it is refused once the token budget is gone.
   */
  admit(limits: TenantLimits, now: number, needsTokens: boolean): RateDecision {
    const window = Math.floor(now / WINDOW_MS);
    const row = this.sql
      .exec<{ requests: number; tokens: number }>(
        'SELECT requests, tokens FROM rate_windows WHERE window = ?',
        window,
      )
      .toArray()[0] ?? { requests: 0, tokens: 0 };
    const resetS = Math.max(1, Math.ceil(((window + 1) * WINDOW_MS - now) / 1000));
    const limitedBy =
      row.requests >= limits.requests_per_min
        ? 'requests'
        : needsTokens && row.tokens >= limits.tokens_per_min
          ? 'tokens'
          : null;
    const requests = limitedBy ? row.requests : row.requests + 1;
    if (!limitedBy) {
      this.sql.exec(
        'INSERT INTO rate_windows (window, requests, tokens) VALUES (?, 1, 0) ON CONFLICT(window) DO UPDATE SET requests = requests + 1',
        window,
      );
      this.sql.exec('DELETE FROM rate_windows WHERE window < ?', window - 1);
    }
    return {
      ok: limitedBy === null,
      limitedBy,
      requests: {
        limit: limits.requests_per_min,
        remaining: Math.max(0, limits.requests_per_min - requests),
        resetS,
      },
      tokens: {
        limit: limits.tokens_per_min,
        remaining: Math.max(0, limits.tokens_per_min - row.tokens),
        resetS,
      },
    };
  }

  private addTokens(tokens: number, now: number): void {
    this.sql.exec(
      'INSERT INTO rate_windows (window, requests, tokens) VALUES (?, 0, ?) ON CONFLICT(window) DO UPDATE SET tokens = tokens + excluded.tokens',
      Math.floor(now / WINDOW_MS),
      tokens,
    );
  }
}

export function meter(env: Env, tenant: string): DurableObjectStub<TenantMeter> {
  return env.TENANT_METER.get(env.TENANT_METER.idFromName(tenant));
}
