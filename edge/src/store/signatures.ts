import { REPLAY_WINDOW_S } from '@ladder/schemas';
import { ApiException } from '../lib/errors.ts';

/**
 * The replay set of workers' signed callbacks: a signature is accepted once. A signature cannot
 * verify once its timestamp leaves the window, so rows are kept only that long and pruned as new
 * ones arrive; the table holds at most the callback rate times twice the window.
 */
export async function refuseReplay(
  env: Env,
  signed: { signature: string; timestamp: number },
): Promise<void> {
  const now = Math.floor(Date.now() / 1000);
  const [, insert] = await env.DB.batch([
    env.DB.prepare('DELETE FROM seen_signatures WHERE expires_at < ?').bind(now),
    env.DB.prepare(
      'INSERT INTO seen_signatures (signature, expires_at) VALUES (?, ?) ON CONFLICT (signature) DO NOTHING',
    ).bind(signed.signature, signed.timestamp + REPLAY_WINDOW_S + 1),
  ]);
  if (insert!.meta.changes === 0) {
    throw new ApiException(
      401,
      'Bad request signature: replayed request.',
      'invalid_request_error',
      'replay',
    );
  }
}
