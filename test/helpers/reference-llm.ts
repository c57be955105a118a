// An independent plain-TypeScript float64 forward of the Llama / Qwen2 / Qwen3 decoder, written
// from the Hugging Face modeling code, to check the ONNX backbone against. No graph code is used.
import type { BackboneConfig } from '../../gpu-worker/src/backbone/types.ts';

export type Weights = Map<string, Float32Array>;

function w(weights: Weights, name: string): Float32Array {
  const t = weights.get(name);
  if (!t) throw new Error(`reference: no weight ${name}`);
  return t;
}

/** y (T, N) = x (T, K) W^T with W (N, K) row-major, + b. */
function linear(x: Float64Array[], W: Float32Array, n: number, k: number, b?: Float32Array): Float64Array[] {
  return x.map((row) => {
    const y = new Float64Array(n);
    for (let j = 0; j < n; j++) {
      let acc = b ? b[j]! : 0;
      for (let i = 0; i < k; i++) acc += row[i]! * W[j * k + i]!;
      y[j] = acc;
    }
    return y;
  });
}

function rmsNorm(x: Float64Array, weight: Float32Array, eps: number): Float64Array {
  let ms = 0;
  for (const v of x) ms += v * v;
  const inv = 1 / Math.sqrt(ms / x.length + eps);
  return x.map((v, i) => v * inv * weight[i]!);
}

function invFreq(cfg: BackboneConfig): number[] {
  const half = cfg.headDim / 2;
  const base = Array.from({ length: half }, (_, i) => 1 / cfg.ropeTheta ** ((2 * i) / cfg.headDim));
  const s = cfg.ropeScaling;
  if (!s) return base;
  const lowW = s.originalMaxPositions / s.lowFreqFactor;
  const highW = s.originalMaxPositions / s.highFreqFactor;
  return base.map((f) => {
    const wl = (2 * Math.PI) / f;
    if (wl < highW) return f;
    if (wl > lowW) return f / s.factor;
    const sm = (s.originalMaxPositions / wl - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    return (1 - sm) * (f / s.factor) + sm * f;
  });
}

/** rotate_half convention: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin) per pair i, i + d/2. */
function rope(head: Float64Array, pos: number, freqs: number[]): Float64Array {
  const half = head.length / 2;
  const out = new Float64Array(head.length);
  for (let i = 0; i < half; i++) {
    const c = Math.cos(pos * freqs[i]!);
    const s = Math.sin(pos * freqs[i]!);
    out[i] = head[i]! * c - head[i + half]! * s;
    out[i + half] = head[i + half]! * c + head[i]! * s;
  }
  return out;
}

export interface ReferenceOutput {
  taps: Float64Array[][]; // L + 1 taps, each (T, d)
  finalHidden: Float64Array[]; // (T, d)
  logits: Float64Array[]; // (T, V)
}

/** One sequence, no padding, positions 0..T-1. */
export function referenceForward(cfg: BackboneConfig, weights: Weights, ids: number[]): ReferenceOutput {
  const { hiddenSize: d, heads: H, kvHeads: Hkv, headDim: dh, intermediateSize: ff } = cfg;
  const T = ids.length;
  const E = w(weights, 'model.embed_tokens.weight');
  let x = ids.map((id) => Float64Array.from(E.subarray(id * d, (id + 1) * d)));
  const taps = [x.map((r) => r.slice())];
  const freqs = invFreq(cfg);
  for (let l = 0; l < cfg.layers; l++) {
    const p = `model.layers.${l}`;
    const h = x.map((r) => rmsNorm(r, w(weights, `${p}.input_layernorm.weight`), cfg.rmsNormEps));
    const bias = (n: string) => (cfg.qkvBias ? w(weights, `${p}.self_attn.${n}_proj.bias`) : undefined);
    const q = linear(h, w(weights, `${p}.self_attn.q_proj.weight`), H * dh, d, bias('q'));
    const k = linear(h, w(weights, `${p}.self_attn.k_proj.weight`), Hkv * dh, d, bias('k'));
    const v = linear(h, w(weights, `${p}.self_attn.v_proj.weight`), Hkv * dh, d, bias('v'));
    const headOf = (m: Float64Array[], t: number, hh: number, norm?: string) => {
      const head = m[t]!.slice(hh * dh, (hh + 1) * dh);
      const normed = norm ? rmsNorm(head, w(weights, `${p}.self_attn.${norm}.weight`), cfg.rmsNormEps) : head;
      return rope(normed, t, freqs);
    };
    const attnOut = Array.from({ length: T }, () => new Float64Array(H * dh));
    for (let hh = 0; hh < H; hh++) {
      const kvh = Math.floor(hh / (H / Hkv)); // repeat_kv
      for (let t = 0; t < T; t++) {
        const qh = headOf(q, t, hh, cfg.qkNorm ? 'q_norm' : undefined);
        const scores: number[] = [];
        for (let s = 0; s <= t; s++) {
          const kh = headOf(k, s, kvh, cfg.qkNorm ? 'k_norm' : undefined);
          let dot = 0;
          for (let i = 0; i < dh; i++) dot += qh[i]! * kh[i]!;
          scores.push(dot / Math.sqrt(dh));
        }
        const max = Math.max(...scores);
        const e = scores.map((sc) => Math.exp(sc - max));
        const z = e.reduce((a, b) => a + b, 0);
        for (let s = 0; s <= t; s++) {
          for (let i = 0; i < dh; i++) attnOut[t]![hh * dh + i]! += (e[s]! / z) * v[s]![kvh * dh + i]!;
        }
      }
    }
    const o = linear(attnOut, w(weights, `${p}.self_attn.o_proj.weight`), d, H * dh);
    const x1 = x.map((r, t) => r.map((val, i) => val + o[t]![i]!));
    const h2 = x1.map((r) => rmsNorm(r, w(weights, `${p}.post_attention_layernorm.weight`), cfg.rmsNormEps));
    const gate = linear(h2, w(weights, `${p}.mlp.gate_proj.weight`), ff, d);
    const up = linear(h2, w(weights, `${p}.mlp.up_proj.weight`), ff, d);
    const act = gate.map((r, t) => r.map((gv, i) => (gv / (1 + Math.exp(-gv))) * up[t]![i]!));
    const down = linear(act, w(weights, `${p}.mlp.down_proj.weight`), d, ff);
    x = x1.map((r, t) => r.map((val, i) => val + down[t]![i]!));
    taps.push(x.map((r) => r.slice()));
  }
  const finalHidden = x.map((r) => rmsNorm(r, w(weights, 'model.norm.weight'), cfg.rmsNormEps));
  const head = cfg.tieWordEmbeddings ? E : w(weights, 'lm_head.weight');
  const logits = linear(finalHidden, head, cfg.vocabSize, d);
  return { taps, finalHidden, logits };
}
