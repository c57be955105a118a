import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AdapterStore,
  type AdapterStoreOptions,
  type BlobStore,
  decodeSafetensors,
  manifestKey,
  sha256Hex,
  weightsKey,
} from '../../adapters/index.ts';
import { adapterInput, BACKBONE, OTHER_BACKBONE } from './adapter-fixtures.ts';

/** What the contract needs from a backend: tenant handles, and raw access to the same objects. */
export interface StoreHarness {
  open(tenant: string, opts?: Partial<Omit<AdapterStoreOptions, 'tenant'>>): AdapterStore;
  /** The backend underneath, to corrupt or half-write objects the way a crash or a bad disk would. */
  blobs: BlobStore;
  close(): Promise<void>;
}

let tenantSeq = 0;
/** Every test gets fresh tenants, so tests share a backend without sharing state. */
const freshTenant = (label: string) => `${label}-${process.pid}-${++tenantSeq}`;

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** One behavioural contract, run against every AdapterStore backend. */
export function adapterStoreContract(name: string, setup: () => Promise<StoreHarness>): void {
  describe(`AdapterStore contract: ${name}`, () => {
    let h: StoreHarness;
    const open = (label: string, opts: Partial<Omit<AdapterStoreOptions, 'tenant'>> = {}) =>
      h.open(freshTenant(label), { backboneFingerprint: BACKBONE.fingerprint, ...opts });

    beforeAll(async () => {
      h = await setup();
    });
    afterAll(() => h?.close());

    it('round-trips an adapter: manifest filled in, tensors byte-exact', async () => {
      const store = open('rt');
      const input = adapterInput('sentiment', 1);
      const m = await store.put(input);
      expect(m).toMatchObject({
        tenant: store.tenant,
        adapter_id: 'sentiment',
        version: 1,
        format_version: 1,
      });
      expect(m.side_net).toMatchObject({
        reduction_factor: 4,
        free: 0,
        gate: 'vector',
        init: 'random',
        dropout: 0,
      });
      expect(m.training.final_losses.validation).toBeNull();
      const got = await store.get('sentiment', 1);
      expect(got.manifest).toEqual(m);
      expect([...got.tensors.keys()].sort()).toEqual(Object.keys(input.weights).sort());
      for (const [n, t] of Object.entries(input.weights as Record<string, { data: ArrayBufferView }>)) {
        const want = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
        expect(Buffer.from(got.tensors.get(n)!.data).equals(want), n).toBe(true);
      }
      expect(got.weights.byteLength).toBe(m.weights.size_bytes);
    });

    it('keeps versions immutable; an identical re-publish is idempotent', async () => {
      const store = open('imm');
      const first = await store.put(adapterInput('a', 1, { seed: 1 }));
      await expect(store.put(adapterInput('a', 1, { seed: 2 }))).rejects.toMatchObject({
        code: 'already_exists',
      });
      const again = await store.put({ ...adapterInput('a', 1, { seed: 1 }), createdAt: new Date(0) });
      expect(again).toEqual(first);
      await store.put(adapterInput('a', 2, { seed: 2 }));
      expect((await store.get('a', 1)).manifest.weights.sha256).toBe(first.weights.sha256);
    });

    it('refuses missing adapters and adapters of another backbone', async () => {
      const store = open('bb');
      await expect(store.get('nope', 1)).rejects.toMatchObject({ code: 'not_found' });
      await store.put(adapterInput('x', 1, { backbone: OTHER_BACKBONE }));
      await expect(store.get('x', 1)).rejects.toMatchObject({ code: 'backbone_mismatch' });
      await expect(store.get('x', 1)).rejects.toThrow(/other-backbone/);
      const unbound = h.open(store.tenant);
      await expect(unbound.get('x', 1)).rejects.toThrow(/no backboneFingerprint/);
      expect((await unbound.getManifest('x', 1)).backbone).toEqual(OTHER_BACKBONE);
    });

    it('never serves flipped bytes: any corrupted weight byte is an integrity error', async () => {
      const store = open('flip');
      const m = await store.put(adapterInput('f', 1));
      const key = weightsKey(store.tenant, 'f', 1, m.weights.sha256);
      const good = (await h.blobs.get(key))!;
      for (const at of [0, 9, good.byteLength >> 1, good.byteLength - 1]) {
        const bad = new Uint8Array(good);
        bad[at]! ^= 0x01;
        await h.blobs.put(key, bad);
        await expect(store.get('f', 1), `byte ${at}`).rejects.toMatchObject({ code: 'integrity' });
      }
      await h.blobs.put(key, good.subarray(0, good.byteLength - 4));
      await expect(store.get('f', 1)).rejects.toThrow(/bytes, manifest says/);
      await h.blobs.delete(key);
      await expect(store.get('f', 1)).rejects.toThrow(/weights .* missing/);
      await h.blobs.put(key, good);
      expect((await store.get('f', 1)).manifest.version).toBe(1);
    });

    it('checks the safetensors header even when the sha256 was forged to match', async () => {
      const store = open('forge');
      const m = await store.put(adapterInput('g', 1));
      const good = (await h.blobs.get(weightsKey(store.tenant, 'g', 1, m.weights.sha256)))!;
      // Rewrite the first tensor's shape in the header; keep the length so offsets still parse.
      const n = Number(new DataView(good.buffer, good.byteOffset).getBigUint64(0, true));
      const header = dec(good.subarray(8, 8 + n));
      const first = decodeSafetensors(good).tensors[0]!;
      const forgedHeader = header.replace(
        `"shape":[${first.shape.join(',')}]`,
        `"shape":[${first.shape[0]! + 1},${first.shape.slice(1).join(',')}]`.replace(/,]$/, ']'),
      );
      expect(forgedHeader).not.toBe(header);
      const forged = new Uint8Array(8 + forgedHeader.length + (good.byteLength - 8 - n));
      new DataView(forged.buffer).setBigUint64(0, BigInt(forgedHeader.length), true);
      forged.set(enc(forgedHeader), 8);
      forged.set(good.subarray(8 + n), 8 + forgedHeader.length);
      const sha = sha256Hex(forged);
      await h.blobs.put(weightsKey(store.tenant, 'g', 1, sha), forged);
      const manifest = { ...m, weights: { ...m.weights, sha256: sha, size_bytes: forged.byteLength } };
      await h.blobs.put(manifestKey(store.tenant, 'g', 1), enc(JSON.stringify(manifest)));
      await expect(store.get('g', 1)).rejects.toThrow(
        new RegExp(`tensor "${first.name.replaceAll('.', '\\.')}"`),
      );
    });

    it('validates manifests on every read and names the bad field', async () => {
      const store = open('man');
      const m = await store.put(adapterInput('m', 1));
      const key = manifestKey(store.tenant, 'm', 1);
      await h.blobs.put(key, enc(JSON.stringify({ ...m, weights: { ...m.weights, sha256: 'xyz' } })));
      await expect(store.get('m', 1)).rejects.toThrow(/weights\.sha256/);
      await h.blobs.put(key, enc('{not json'));
      await expect(store.getManifest('m', 1)).rejects.toMatchObject({ code: 'integrity' });
      // A valid manifest copied under another id is refused: it names its own key.
      await h.blobs.put(key, enc(JSON.stringify(m)));
      await h.blobs.put(manifestKey(store.tenant, 'copy', 1), enc(JSON.stringify(m)));
      await expect(store.get('copy', 1)).rejects.toThrow(/manifest names/);
    });

    it('never shows a half-finished upload: weights without a manifest do not exist', async () => {
      const store = open('half');
      const input = adapterInput('h', 1);
      const probe = open('probe');
      const m = await probe.put(input);
      const bytes = (await h.blobs.get(weightsKey(probe.tenant, 'h', 1, m.weights.sha256)))!;
      await h.blobs.put(weightsKey(store.tenant, 'h', 1, m.weights.sha256), bytes); // the crash point
      await expect(store.get('h', 1)).rejects.toMatchObject({ code: 'not_found' });
      expect((await store.list()).items).toEqual([]);
      await store.put(input); // the retry completes it
      expect((await store.list()).items.map((x) => x.adapter_id)).toEqual(['h']);
    });

    it('lists one tenant with pagination, in key order, with an opaque cursor', async () => {
      const store = open('list');
      const want: string[] = [];
      for (const id of ['a', 'b', 'c', 'd', 'e']) {
        for (const v of id === 'c' ? [1, 2, 10] : [1]) {
          await store.put(adapterInput(id, v));
          want.push(`${id}/v${v}`);
        }
      }
      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await store.list({ limit: 3, ...(cursor ? { cursor } : {}) });
        expect(page.items.length).toBeLessThanOrEqual(3);
        seen.push(...page.items.map((m) => `${m.adapter_id}/v${m.version}`));
        cursor = page.nextCursor ?? undefined;
        pages++;
      } while (cursor);
      expect(pages).toBe(3);
      expect(seen).toEqual(['a/v1', 'b/v1', 'c/v1', 'c/v10', 'c/v2', 'd/v1', 'e/v1']);
      expect(new Set(seen)).toEqual(new Set(want));
      const versions = await store.list({ adapterId: 'c', limit: 2 });
      expect(versions.items.map((m) => m.version)).toEqual([1, 10]);
      const rest = await store.list({ adapterId: 'c', limit: 2, cursor: versions.nextCursor! });
      expect(rest).toMatchObject({ nextCursor: null });
      expect(rest.items.map((m) => m.version)).toEqual([2]);
      await expect(store.list({ cursor: 'garbage!' })).rejects.toMatchObject({ code: 'invalid_argument' });
      await expect(store.list({ adapterId: 'a', cursor: versions.nextCursor! })).rejects.toMatchObject({
        code: 'invalid_argument',
      });
      await expect(store.list({ limit: 0 })).rejects.toThrow(/limit/);
    });

    it('deletes a version, then a whole adapter, weights included', async () => {
      const store = open('del');
      await store.put(adapterInput('d', 1));
      await store.put(adapterInput('d', 2));
      await store.put(adapterInput('keep', 1));
      expect(await store.delete('d', 1)).toBe(1);
      await expect(store.get('d', 1)).rejects.toMatchObject({ code: 'not_found' });
      expect((await store.get('d', 2)).manifest.version).toBe(2);
      expect(await store.delete('d')).toBe(1);
      expect(await store.delete('d')).toBe(0);
      const left = await h.blobs.list(`tenants/${store.tenant}/adapters/`, { limit: 100 });
      expect(left.keys.every((k) => k.includes('/keep/'))).toBe(true);
      expect((await store.list()).items.map((m) => m.adapter_id)).toEqual(['keep']);
    });

    it('keeps training checkpoints: mutable steps, a latest pointer, verified reads, retention', async () => {
      const store = open('ckpt', { keepCheckpoints: 2 });
      expect(await store.checkpoints.latest('job1')).toBeUndefined();
      for (const step of [10, 20, 30])
        await store.checkpoints.put('job1', { step, data: enc(`state@${step}`) });
      const latest = (await store.checkpoints.latest('job1'))!;
      expect(latest.record).toMatchObject({ step: 30, job_id: 'job1', tenant: store.tenant });
      expect(dec(latest.data)).toBe('state@30');
      expect(await store.checkpoints.steps('job1')).toEqual([20, 30]);
      expect(dec((await store.checkpoints.get('job1', 20)).data)).toBe('state@20');
      await expect(store.checkpoints.get('job1', 10)).rejects.toMatchObject({ code: 'not_found' });
      await store.checkpoints.put('job1', {
        step: 30,
        data: enc('state@30 rewritten'),
        metadata: { epoch: '2' },
      });
      const again = (await store.checkpoints.latest('job1'))!;
      expect(dec(again.data)).toBe('state@30 rewritten');
      expect(again.record.metadata).toEqual({ epoch: '2' });
      const dataKey = `tenants/${store.tenant}/checkpoints/job1/step-000000000030.bin`;
      await h.blobs.put(dataKey, enc('state@30 rewritteN'));
      await expect(store.checkpoints.latest('job1')).rejects.toMatchObject({ code: 'integrity' });
      await store.checkpoints.delete('job1');
      expect(await store.checkpoints.latest('job1')).toBeUndefined();
      expect(await store.checkpoints.steps('job1')).toEqual([]);
    });

    it('stores datasets as plain objects with pagination', async () => {
      const store = open('ds');
      await expect(store.datasets.get('train.jsonl')).rejects.toMatchObject({ code: 'not_found' });
      for (const n of ['a.jsonl', 'b.jsonl', 'c.jsonl'])
        await store.datasets.put(n, enc(`{"text":"${n}"}\n`));
      await store.datasets.put('b.jsonl', enc('replaced'));
      expect(dec(await store.datasets.get('b.jsonl'))).toBe('replaced');
      const p1 = await store.datasets.list({ limit: 2 });
      expect(p1.names).toEqual(['a.jsonl', 'b.jsonl']);
      const p2 = await store.datasets.list({ limit: 2, cursor: p1.nextCursor! });
      expect(p2).toEqual({ names: ['c.jsonl'], nextCursor: null });
      await store.datasets.delete('a.jsonl');
      expect((await store.datasets.list()).names).toEqual(['b.jsonl', 'c.jsonl']);
    });

    describe('tenant isolation', () => {
      const crafted = [
        '../victim',
        '..',
        '.',
        '/etc/passwd',
        'a/b',
        'a\\b',
        '%2e%2e%2fvictim',
        '\uff0e\uff0e\uff0fvictim', // fullwidth ../
        'victim\u2215x', // division slash
        'v\u0131ctim', // dotless i
        'victim\u0000',
        '\u202evictim',
        'victim ',
        '',
        'x'.repeat(129),
      ];

      it("tenant B's handle cannot read, list or delete tenant A's adapters", async () => {
        const a = open('victim');
        const b = open('attacker');
        await a.put(adapterInput('secret', 1));
        await a.datasets.put('train.jsonl', enc('private'));
        await a.checkpoints.put('job', { step: 1, data: enc('ckpt') });
        await expect(b.get('secret', 1)).rejects.toMatchObject({ code: 'not_found' });
        await expect(b.getManifest('secret', 1)).rejects.toMatchObject({ code: 'not_found' });
        expect((await b.list()).items).toEqual([]);
        expect(await b.delete('secret')).toBe(0);
        await expect(b.datasets.get('train.jsonl')).rejects.toMatchObject({ code: 'not_found' });
        expect(await b.checkpoints.latest('job')).toBeUndefined();
        for (const id of [
          `../${a.tenant}/adapters/secret`,
          `../../tenants/${a.tenant}/adapters/secret`,
          ...crafted,
        ]) {
          await expect(b.get(id, 1), id).rejects.toMatchObject({ code: 'invalid_argument' });
          await expect(b.delete(id), id).rejects.toMatchObject({ code: 'invalid_argument' });
          await expect(b.list({ adapterId: id }), id).rejects.toMatchObject({ code: 'invalid_argument' });
          await expect(b.datasets.get(id), id).rejects.toMatchObject({ code: 'invalid_argument' });
          await expect(b.checkpoints.latest(id), id).rejects.toMatchObject({ code: 'invalid_argument' });
          expect(() => b.forTenant(id), id).toThrow(/tenant/);
        }
        const outside = Buffer.from(`../../${a.tenant}/adapters/secret/v1/manifest.json`).toString(
          'base64url',
        );
        await expect(b.list({ cursor: outside })).rejects.toMatchObject({ code: 'invalid_argument' });
        expect((await a.get('secret', 1)).manifest.tenant).toBe(a.tenant);
        expect(dec(await a.datasets.get('train.jsonl'))).toBe('private');
      });

      it('refuses dataset names that could walk out of the prefix', async () => {
        const b = open('attacker');
        for (const n of ['..', '../x', 'a..b', '.hidden', 'a/b', '\uff0e\uff0e']) {
          await expect(b.datasets.put(n, enc('x')), n).rejects.toMatchObject({ code: 'invalid_argument' });
        }
      });
    });
  });
}
