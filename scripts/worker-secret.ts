// Prints a GPU worker's own secret (its LADDER_WORKER_SECRET), derived from the edge's master
// secret as the edge derives it: `WORKER_SIGNING_SECRET=... npx tsx scripts/worker-secret.ts gpu-7`.
import { deriveWorkerSecret, WORKER_ID_PATTERN } from '../schemas/index.ts';

const master = process.env.WORKER_SIGNING_SECRET;
const workerId = process.argv[2];
if (!master || !workerId || !WORKER_ID_PATTERN.test(workerId)) {
  console.error(
    'usage: WORKER_SIGNING_SECRET=<the edge master secret> tsx scripts/worker-secret.ts <worker id>',
  );
  process.exit(2);
}
console.log(await deriveWorkerSecret(master, workerId));
