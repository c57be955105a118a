import { DurableObject } from 'cloudflare:workers';
import type { Heartbeat } from '@ladder/schemas';
import { expireLease, type Lease } from '../jobs/lease.ts';
import { config } from '../lib/config.ts';

export interface WorkerInfo {
  worker_id: string;
  url: string;
  backbone: string;
  queue_depth: number;
  max_queue: number;
  running_jobs: number;
  loaded_adapters: string[];
  /** Unix milliseconds of the last heartbeat. */
  last_seen: number;
}

/**
 * The one registry (a single named object): which GPU workers are alive, and which training jobs
 * they hold. Workers stay in rotation while they heartbeat; job leases that run out without
 * progress are handed to `expireLease` from the alarm, which re-dispatches or fails the job.
 */
export class WorkerRegistry extends DurableObject<Env> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`CREATE TABLE IF NOT EXISTS workers (
      worker_id TEXT PRIMARY KEY, url TEXT NOT NULL, backbone TEXT NOT NULL, queue_depth INTEGER NOT NULL,
      max_queue INTEGER NOT NULL, running_jobs INTEGER NOT NULL, loaded_adapters TEXT NOT NULL, last_seen INTEGER NOT NULL)`);
    this.sql.exec(`CREATE TABLE IF NOT EXISTS leases (
      job_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, attempt INTEGER NOT NULL, worker_id TEXT NOT NULL,
      expires_at INTEGER NOT NULL)`);
  }

  heartbeat(hb: Heartbeat, now: number): { workers: number } {
    this.sql.exec(
      `INSERT INTO workers VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(worker_id) DO UPDATE SET
        url = excluded.url, backbone = excluded.backbone, queue_depth = excluded.queue_depth,
        max_queue = excluded.max_queue, running_jobs = excluded.running_jobs,
        loaded_adapters = excluded.loaded_adapters, last_seen = excluded.last_seen`,
      hb.worker_id,
      hb.url.replace(/\/+$/, ''),
      hb.backbone.name,
      hb.capacity.queue_depth,
      hb.capacity.max_queue,
      hb.capacity.running_jobs,
      JSON.stringify(hb.loaded_adapters),
      now,
    );
    return { workers: this.healthy(now).length };
  }

  /** Workers heard from within the heartbeat TTL. */
  healthy(now: number): WorkerInfo[] {
    const since = now - config(this.env).heartbeatTtlS * 1000;
    return this.sql
      .exec<Record<string, SqlStorageValue>>(
        'SELECT * FROM workers WHERE last_seen >= ? ORDER BY worker_id',
        since,
      )
      .toArray()
      .map(workerInfo);
  }

  /** A worker by id, heard from recently or not (a job's worker may since have gone quiet). */
  worker(workerId: string): WorkerInfo | null {
    const row = this.sql
      .exec<Record<string, SqlStorageValue>>('SELECT * FROM workers WHERE worker_id = ?', workerId)
      .toArray()[0];
    return row ? workerInfo(row) : null;
  }

  async lease(lease: Omit<Lease, 'expires_at'>, now: number): Promise<Lease> {
    const expires_at = now + config(this.env).jobLeaseS * 1000;
    this.sql.exec(
      `INSERT INTO leases VALUES (?, ?, ?, ?, ?) ON CONFLICT(job_id) DO UPDATE SET
        tenant = excluded.tenant, attempt = excluded.attempt, worker_id = excluded.worker_id,
        expires_at = excluded.expires_at`,
      lease.job_id,
      lease.tenant,
      lease.attempt,
      lease.worker_id,
      expires_at,
    );
    await this.scheduleAlarm();
    return { ...lease, expires_at };
  }

  /** Progress extends the lease; a job with no lease (not dispatched, or finished) is left alone. */
  async renew(jobId: string, now: number): Promise<boolean> {
    const expires_at = now + config(this.env).jobLeaseS * 1000;
    const c = this.sql.exec(
      'UPDATE leases SET expires_at = MAX(expires_at, ?) WHERE job_id = ?',
      expires_at,
      jobId,
    );
    return c.rowsWritten > 0;
  }

  release(jobId: string): void {
    this.sql.exec('DELETE FROM leases WHERE job_id = ?', jobId);
  }

  leases(): Lease[] {
    return this.sql
      .exec<Lease & Record<string, SqlStorageValue>>('SELECT * FROM leases ORDER BY job_id')
      .toArray();
  }

  /** Forgets workers that missed their heartbeats (healthy() already ignores them). */
  dropStaleWorkers(now: number): string[] {
    const since = now - config(this.env).heartbeatTtlS * 1000;
    return this.sql
      .exec<{ worker_id: string }>('DELETE FROM workers WHERE last_seen < ? RETURNING worker_id', since)
      .toArray()
      .map((r) => r.worker_id);
  }

  /**
   * Hands every lease that ran out by `now` to `expireLease` (re-dispatch or fail). Takes `now`
   * so a test can look into the future instead of sleeping.
   */
  async expireLeases(now: number): Promise<string[]> {
    const expired = this.sql
      .exec<Lease & Record<string, SqlStorageValue>>(
        'DELETE FROM leases WHERE expires_at <= ? RETURNING *',
        now,
      )
      .toArray();
    for (const lease of expired) await expireLease(this.env, lease, now);
    await this.scheduleAlarm();
    return expired.map((l) => l.job_id);
  }

  override async alarm(): Promise<void> {
    const now = Date.now();
    this.dropStaleWorkers(now);
    await this.expireLeases(now);
  }

  private async scheduleAlarm(): Promise<void> {
    const next = this.sql.exec<{ t: number | null }>('SELECT MIN(expires_at) AS t FROM leases').one().t;
    if (next === null) await this.ctx.storage.deleteAlarm();
    else await this.ctx.storage.setAlarm(next);
  }
}

function workerInfo(r: Record<string, SqlStorageValue>): WorkerInfo {
  return { ...(r as unknown as WorkerInfo), loaded_adapters: JSON.parse(r.loaded_adapters as string) };
}

export function registry(env: Env): DurableObjectStub<WorkerRegistry> {
  return env.WORKER_REGISTRY.get(env.WORKER_REGISTRY.idFromName('global'));
}
