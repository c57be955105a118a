import { randomUUID } from 'node:crypto';
import { link, mkdir, open, readdir, readFile, rename, rm, rmdir, unlink } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import type { BlobPage, BlobStore } from './blob.ts';
import { equalBytes } from './blob.ts';
import { AlreadyExistsError, InvalidArgumentError } from './errors.ts';

export interface FsBlobStoreOptions {
  /** Root directory; created on first write. */
  dataDir: string;
}

/** A segment of a stored key: what keys.ts produces, and never a dot-file (temp files are). */
const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/**
 * Objects as files under a data directory. A write goes to a temp file in the target's
 * directory, is fsynced, then renamed into place (or hard-linked, for create-only writes: link
 * fails atomically if the name exists), and the directory is fsynced, so a crash leaves either the
 * old object or the new one, never a torn file under a real key.
 */
export class FsBlobStore implements BlobStore {
  readonly location: string;
  private readonly root: string;

  constructor(opts: FsBlobStoreOptions) {
    this.root = resolve(opts.dataDir);
    this.location = this.root;
  }

  private path(key: string): string {
    const segments = key.split('/');
    if (!segments.every((s) => SEGMENT.test(s) && s !== '..')) {
      throw new InvalidArgumentError(`storage key ${JSON.stringify(key)} has an unsafe segment`);
    }
    const p = join(this.root, ...segments);
    if (!p.startsWith(this.root + sep))
      throw new InvalidArgumentError(`storage key ${JSON.stringify(key)} escapes the store`);
    return p;
  }

  async put(key: string, body: Uint8Array, opts: { createOnly?: boolean } = {}): Promise<void> {
    const path = this.path(key);
    const dir = dirname(path);
    const tmp = join(dir, `.tmp-${randomUUID()}`);
    // A concurrent delete may prune the (empty) directory between mkdir and open: retry.
    for (let attempt = 0; ; attempt++) {
      await mkdir(dir, { recursive: true });
      try {
        const fh = await open(tmp, 'wx');
        try {
          await fh.writeFile(body);
          await fh.sync();
        } finally {
          await fh.close();
        }
        break;
      } catch (e) {
        if (errno(e) !== 'ENOENT' || attempt >= 3) throw e;
      }
    }
    try {
      if (opts.createOnly) {
        try {
          await link(tmp, path);
        } catch (e) {
          if (errno(e) !== 'EEXIST') throw e;
          const existing = await this.get(key);
          if (!existing || !equalBytes(existing, body)) {
            throw new AlreadyExistsError(`${key} already exists in ${this.location} with different content`);
          }
        }
      } else {
        await rename(tmp, path);
      }
    } finally {
      await rm(tmp, { force: true });
    }
    await syncDir(dir);
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    try {
      // A plain Uint8Array, not a Buffer: Buffer#slice shares memory, Uint8Array#slice copies.
      const buf = await readFile(this.path(key));
      return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    } catch (e) {
      if (errno(e) === 'ENOENT' || errno(e) === 'EISDIR' || errno(e) === 'ENOTDIR') return undefined;
      throw e;
    }
  }

  async list(prefix: string, opts: { startAfter?: string; limit: number }): Promise<BlobPage> {
    const base = prefix.slice(0, prefix.lastIndexOf('/') + 1);
    const keys: string[] = [];
    await this.walk(base, keys);
    const after = opts.startAfter;
    const matching = keys.filter((k) => k.startsWith(prefix) && (after === undefined || k > after)).sort();
    return { keys: matching.slice(0, opts.limit), truncated: matching.length > opts.limit };
  }

  private async walk(dirKey: string, out: string[]): Promise<void> {
    const dir = dirKey ? this.path(dirKey.slice(0, -1)) : this.root;
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (e) {
      if (errno(e) === 'ENOENT' || errno(e) === 'ENOTDIR') return;
      throw e;
    }
    for (const ent of entries) {
      if (!SEGMENT.test(ent.name)) continue; // temp files and anything foreign
      if (ent.isDirectory()) await this.walk(`${dirKey}${ent.name}/`, out);
      else if (ent.isFile()) out.push(`${dirKey}${ent.name}`);
    }
  }

  async delete(key: string): Promise<void> {
    const path = this.path(key);
    try {
      await unlink(path);
    } catch (e) {
      if (errno(e) !== 'ENOENT') throw e;
      return;
    }
    // Prune now-empty directories so listings do not walk dead branches.
    for (let dir = dirname(path); dir.startsWith(this.root + sep); dir = dirname(dir)) {
      try {
        await rmdir(dir);
      } catch {
        break;
      }
    }
  }
}

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
