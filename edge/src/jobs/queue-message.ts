import { SafeId } from '@ladder/schemas';
import { z } from 'zod';

/** What goes on the training queue: which job, and which dispatch attempt this message is for. */
export const TrainingJobMessage = z.strictObject({
  job_id: SafeId,
  tenant: SafeId,
  attempt: z.number().int().min(1),
});
export type TrainingJobMessage = z.infer<typeof TrainingJobMessage>;

export async function enqueueJob(env: Env, msg: TrainingJobMessage): Promise<void> {
  await env.TRAINING_QUEUE.send(msg, { contentType: 'json' });
}
