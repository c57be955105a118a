import { dispatchJob, failUndispatchable } from './jobs/dispatch.ts';
import { PURGE_DELIVERIES, PurgeMessage, purgeOn, purgeRetryDelayS } from './jobs/purge.ts';
import { TrainingJobMessage } from './jobs/queue-message.ts';

/** Deliveries of one message before the job fails as undispatchable (below the queue's max_retries). */
export const MAX_DELIVERIES = 8;
const RETRY_DELAY_S = 10;

/** The training-queue consumer: each message leases one job to a GPU worker, or retries a purge on one. */
export async function queue(batch: MessageBatch<unknown>, env: Env): Promise<void> {
  for (const message of batch.messages) {
    const purge = PurgeMessage.safeParse(message.body);
    if (purge.success) {
      const { worker_id, purge: req } = purge.data;
      if (await purgeOn(env, worker_id, req)) message.ack();
      else if (message.attempts >= PURGE_DELIVERIES) {
        console.error(`edge: gave up purging job ${req.job_id} on worker ${worker_id}`);
        message.ack();
      } else message.retry({ delaySeconds: purgeRetryDelayS(message.attempts + 1) });
      continue;
    }
    const parsed = TrainingJobMessage.safeParse(message.body);
    if (!parsed.success) {
      console.error('edge: dropping a malformed training-queue message', message.body);
      message.ack();
      continue;
    }
    const outcome = await dispatchJob(env, parsed.data);
    if (outcome !== 'no_worker') message.ack();
    else if (message.attempts >= MAX_DELIVERIES) {
      await failUndispatchable(env, parsed.data, message.attempts);
      message.ack();
    } else message.retry({ delaySeconds: RETRY_DELAY_S });
  }
}
