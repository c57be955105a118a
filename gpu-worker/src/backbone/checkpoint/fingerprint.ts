import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { fail } from './errors.ts';
import { findWeightFiles } from './source.ts';

/**
 * sha256 over config.json and every weight file (the index too, when sharded), streamed: the key
 * of the on-disk build cache. Each file enters as `name \n size \n bytes`, so renaming or
 * re-splitting shards changes the key. Tokenizer files are left out: they do not change the graph.
 */
export async function checkpointFingerprint(dir: string): Promise<string> {
  const { origin, files } = await findWeightFiles(dir);
  const all = [join(dir, 'config.json'), ...(origin === files[0] ? [] : [origin]), ...files];
  const hash = createHash('sha256');
  for (const file of all) {
    let size: number;
    try {
      size = (await stat(file)).size;
    } catch (e) {
      fail(file, 'file', `cannot be read (${(e as Error).message})`);
    }
    hash.update(`${basename(file)}\n${size}\n`);
    let seen = 0;
    for await (const chunk of createReadStream(file, { highWaterMark: 4 << 20 })) {
      hash.update(chunk as Buffer);
      seen += (chunk as Buffer).byteLength;
    }
    if (seen !== size) fail(file, 'file', `changed while it was hashed (${size} -> ${seen} bytes)`);
  }
  return hash.digest('hex');
}
