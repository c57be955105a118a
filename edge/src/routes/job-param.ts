import { notFound } from '../lib/errors.ts';
import { IdParam } from '../lib/openapi.ts';
import { getJob, type JobRow } from '../store/jobs.ts';

/** The `{job_id}` of the `/v1/fine_tuning/jobs/{job_id}/...` routes. */
export const JobParam = IdParam('job_id');
export const jobIdOf = (p: Record<string, string>) => p.job_id as string;

export async function mustGetJob(env: Env, tenant: string, id: string): Promise<JobRow> {
  const job = await getJob(env, tenant, id);
  if (!job) throw notFound('fine_tuning_job', id, 'job_id');
  return job;
}
