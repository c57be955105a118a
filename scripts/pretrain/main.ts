import { join } from 'node:path';
import { prepareData } from './data.ts';
import { RECIPE } from './recipe.ts';
import { pretrain } from './train.ts';

/**
 * `npm run pretrain [-- --stop-at N]`: the recipe from nothing to a trained checkpoint, resumable.
 * Work files (tokenizer, token streams, checkpoint, log) live in $LADDER_PRETRAIN_DIR
 * (default .data/pretrain); run it again after a stop and it goes on from the last checkpoint.
 * `npm run pretrain -- export` then writes the Hugging Face model directory (export.ts), and
 * `npm run pretrain -- tasks [dir]` the real tasks' JSONL files (tasks.ts; default .data/tasks).
 */
const dir = process.env.LADDER_PRETRAIN_DIR ?? join(process.cwd(), '.data', 'pretrain');
const args = process.argv.slice(2);
const stopFlag = args.indexOf('--stop-at');
const stopAt = stopFlag >= 0 ? Number(args[stopFlag + 1]) : undefined;

if (args[0] === 'tasks') {
  const { writeTasks } = await import('./tasks.ts');
  const out = args[1] ?? join(process.cwd(), '.data', 'tasks');
  for (const path of await writeTasks(out)) console.log(path);
  process.exit(0);
}
const data = await prepareData(dir, RECIPE);
console.error(
  `pretrain: ${data.brown.length + data.wordnet.length} training tokens (brown ${data.brown.length}, wordnet ${data.wordnet.length}), ${data.heldout.length} held out; work dir ${dir}`,
);
if (args[0] === 'export') {
  const { exportModel } = await import('./export.ts');
  await exportModel(dir, data, RECIPE);
} else {
  const result = await pretrain(RECIPE, data, { dir, stopAt, log: (l) => console.log(JSON.stringify(l)) });
  console.error(`pretrain: at step ${result.step}${result.finished ? ' (finished)' : ''}`);
}
