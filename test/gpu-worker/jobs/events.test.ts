import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EVENT_POSTER_DEFAULTS,
  type EventPosterOptions,
  postWithRetries,
} from '../../../gpu-worker/src/jobs/index.ts';
import type { JobEvent } from '../../../schemas/index.ts';
import { SECRET, StandInEdge } from '../server/helpers.ts';

let edge: StandInEdge;
beforeAll(async () => {
  edge = await new StandInEdge().start();
});
afterAll(() => edge.close());

const event = (jobId: string, type: JobEvent['type']): JobEvent => ({
  event_id: `${jobId}-${type}`,
  job_id: jobId,
  tenant: 'tenant-e',
  type,
  created_at: new Date().toISOString(),
  message: '',
  step: 3,
  total_steps: 10,
  epoch: 1,
  loss: null,
  eval_loss: null,
  learning_rate: null,
  tokens_per_s: null,
  eta_s: null,
});

function poster(log: string[]): EventPosterOptions {
  // Short backoff: the test counts tries, it does not time them.
  return {
    ...EVENT_POSTER_DEFAULTS,
    baseDelayMs: 1,
    maxDelayMs: 10,
    secret: SECRET,
    workerId: 'w1',
    log: (l) => log.push(l),
  };
}

async function until(what: string, f: () => boolean): Promise<void> {
  for (let i = 0; i < 3000 && !f(); i++) await new Promise((r) => setTimeout(r, 10));
  if (!f()) throw new Error(`timed out waiting for ${what}`);
}

describe('posting job events to the edge', () => {
  it('drops a progress event the edge refuses with a 4xx, after one try, and logs it', async () => {
    edge.refuse.set('job-p', 403);
    const log: string[] = [];
    const out = await postWithRetries(
      `${edge.url}/events/job-p`,
      event('job-p', 'progress'),
      poster(log),
      () => false,
    );
    expect(out).toEqual({ kind: 'refused', status: 403 });
    expect(edge.refused.filter((e) => e.job_id === 'job-p')).toHaveLength(1);
    expect(log).toEqual([expect.stringMatching(/refused event job-p-progress \(HTTP 403\): dropped/)]);
  });

  for (const status of [401, 403, 404]) {
    it(`keeps retrying a final event the edge refuses with ${status} until it is taken, logging the refusals`, async () => {
      const jobId = `job-final-${status}`;
      edge.refuse.set(jobId, status);
      edge.jobStatus.set(jobId, 'succeeded');
      const log: string[] = [];
      const posting = postWithRetries(
        `${edge.url}/events/${jobId}`,
        event(jobId, 'succeeded'),
        poster(log),
        () => false,
      );
      await until('several refusals', () => edge.refused.filter((e) => e.job_id === jobId).length >= 5);
      expect(edge.events(jobId)).toEqual([]);
      edge.refuse.delete(jobId); // the secret is fixed, the clock set right
      expect(await posting).toEqual({ kind: 'acknowledged', jobStatus: 'succeeded' });
      expect(edge.events(jobId).map((e) => e.event_id)).toEqual([`${jobId}-succeeded`]);
      // Logged at the first refusal and then at doubling intervals, never dropped.
      expect(log.length).toBeGreaterThan(0);
      expect(log.length).toBeLessThan(edge.refused.filter((e) => e.job_id === jobId).length);
      for (const line of log)
        expect(line).toMatch(
          new RegExp(`refused final event ${jobId}-succeeded \\(HTTP ${status}, try \\d+\\): kept, retrying`),
        );
    });
  }

  it('stops retrying when the worker shuts down, leaving the event for the next start', async () => {
    edge.refuse.set('job-stop', 401);
    let stopped = false;
    const posting = postWithRetries(
      `${edge.url}/events/job-stop`,
      event('job-stop', 'failed'),
      poster([]),
      () => stopped,
    );
    await until('a refusal', () => edge.refused.some((e) => e.job_id === 'job-stop'));
    stopped = true;
    expect(await posting).toBeUndefined();
  });
});
