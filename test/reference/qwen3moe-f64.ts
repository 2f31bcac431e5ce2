// Reference forward of Qwen3-MoE / Qwen3 in float64, written independently of the engine: plain
// loops over dequantized weights, one sequence at a time, full causal attention with an explicit
// softmax. Slow on purpose; tests compare the engine's every logit against it. Follows HF
// modeling_qwen3_moe.py: RMSNorm -> q/k/v -> per-head q/k RMSNorm -> rotate-half RoPE -> GQA
// attention -> o_proj -> residual; RMSNorm -> softmax router -> top-k (renormalised) -> SwiGLU
// experts -> residual; final RMSNorm -> lm_head.
import { GgmlType, ggmlRowBytes } from '../../src/formats/ggml-types.ts';
import { readGguf, readTensorBytes, type GgufModel } from '../../src/formats/gguf-read.ts';
import { bf16ToFp32, fp32ToBf16 } from '../../src/formats/half.ts';
import { dequantize, quantize } from '../../src/formats/quant.ts';

/** A matrix of `rows` rows of `cols` values (ggml dims [cols, rows]), dequantized to float32 exactly. */
interface Mat {
  rows: number;
  cols: number;
  data: Float32Array;
  /** Stored type: decides how activations are rounded when `roundActivations` is on. */
  type: GgmlType;
}

export interface ReferenceOptions {
  /**
   * Round each matrix input the way ggml-style kernels convert activations for that weight type
   * (BF16 weights: bf16; Q8_0: Q8_0 blocks of 32; K-quants: Q8_K blocks of 256), so that only
   * summation order separates the engine from the reference. Off: exact float64 activations.
   */
  roundActivations?: boolean;
}

interface RefLayer {
  attnNorm: Float32Array;
  q: Mat;
  k: Mat;
  v: Mat;
  o: Mat;
  qNorm: Float32Array;
  kNorm: Float32Array;
  ffnNorm: Float32Array;
  // MoE
  router?: Mat;
  gateExps?: Mat[];
  upExps?: Mat[];
  downExps?: Mat[];
  // dense
  gate?: Mat;
  up?: Mat;
  down?: Mat;
}

export interface RefConfig {
  nLayers: number;
  hidden: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  nExperts: number;
  nExpertsUsed: number;
  eps: number;
  theta: number;
  vocab: number;
}

export class ReferenceModel {
  private constructor(
    readonly config: RefConfig,
    private readonly embd: Mat,
    private readonly layers: RefLayer[],
    private readonly outNorm: Float32Array,
    private readonly out: Mat,
  ) {}

  /** Whether the current forward() rounds matrix inputs (see ReferenceOptions). */
  private round = false;

  /** Reads every weight of `path` into float32 (exact dequantization); the math runs in float64. */
  static async load(path: string): Promise<ReferenceModel> {
    const g = await readGguf(path);
    const arch = String(g.metadata.get('general.architecture'));
    const num = (k: string, fallback?: number): number => {
      const v = g.metadata.get(`${arch}.${k}`);
      if (v === undefined) {
        if (fallback === undefined) throw new Error(`reference: ${path} lacks ${arch}.${k}`);
        return fallback;
      }
      return Number(v);
    };
    const hidden = num('embedding_length');
    const nHeads = num('attention.head_count');
    const moe = arch === 'qwen3moe';
    const config: RefConfig = {
      nLayers: num('block_count'),
      hidden,
      nHeads,
      nKvHeads: num('attention.head_count_kv'),
      headDim: num('attention.key_length', hidden / nHeads),
      nExperts: moe ? num('expert_count') : 0,
      nExpertsUsed: moe ? num('expert_used_count') : 0,
      eps: num('attention.layer_norm_rms_epsilon'),
      theta: num('rope.freq_base'),
      vocab: g.tensors.get('token_embd.weight')!.dims[1]!,
    };
    const vec = async (name: string) => (await mat(g, name)).data;
    const layers: RefLayer[] = [];
    for (let i = 0; i < config.nLayers; i++) {
      const b = `blk.${i}.`;
      const layer: RefLayer = {
        attnNorm: await vec(`${b}attn_norm.weight`),
        q: await mat(g, `${b}attn_q.weight`),
        k: await mat(g, `${b}attn_k.weight`),
        v: await mat(g, `${b}attn_v.weight`),
        o: await mat(g, `${b}attn_output.weight`),
        qNorm: await vec(`${b}attn_q_norm.weight`),
        kNorm: await vec(`${b}attn_k_norm.weight`),
        ffnNorm: await vec(`${b}ffn_norm.weight`),
      };
      if (moe) {
        layer.router = await mat(g, `${b}ffn_gate_inp.weight`);
        layer.gateExps = await experts(g, `${b}ffn_gate_exps.weight`);
        layer.upExps = await experts(g, `${b}ffn_up_exps.weight`);
        layer.downExps = await experts(g, `${b}ffn_down_exps.weight`);
      } else {
        layer.gate = await mat(g, `${b}ffn_gate.weight`);
        layer.up = await mat(g, `${b}ffn_up.weight`);
        layer.down = await mat(g, `${b}ffn_down.weight`);
      }
      layers.push(layer);
    }
    const embd = await mat(g, 'token_embd.weight');
    const out = g.tensors.has('output.weight') ? await mat(g, 'output.weight') : embd;
    return new ReferenceModel(config, embd, layers, await vec('output_norm.weight'), out);
  }

  /** Logits [tokens.length][vocab] of one sequence starting at position 0. */
  forward(tokens: readonly number[], opts: ReferenceOptions = {}): Float64Array[] {
    this.round = opts.roundActivations ?? false;
    const c = this.config;
    const T = tokens.length;
    // Per layer, K and V of every position: [T][kvDim].
    const keys = this.layers.map(() => [] as Float64Array[]);
    const values = this.layers.map(() => [] as Float64Array[]);
    const logits: Float64Array[] = [];
    for (let p = 0; p < T; p++) {
      let x: Float64Array = Float64Array.from(row(this.embd, tokens[p]!));
      this.layers.forEach((L, li) => {
        // Attention half.
        const h = rmsNorm(x, L.attnNorm, c.eps);
        const q = this.mv(L.q, h);
        const k = this.mv(L.k, h);
        const v = this.mv(L.v, h);
        for (let hd = 0; hd < c.nHeads; hd++) headNormRope(q, hd * c.headDim, c.headDim, L.qNorm, c.eps, p, c.theta);
        for (let hd = 0; hd < c.nKvHeads; hd++) headNormRope(k, hd * c.headDim, c.headDim, L.kNorm, c.eps, p, c.theta);
        keys[li]!.push(k);
        values[li]!.push(v);
        const att = new Float64Array(c.nHeads * c.headDim);
        const group = c.nHeads / c.nKvHeads;
        for (let hd = 0; hd < c.nHeads; hd++) {
          const kvh = Math.floor(hd / group);
          const scores = new Float64Array(p + 1);
          for (let t = 0; t <= p; t++) {
            let s = 0;
            for (let j = 0; j < c.headDim; j++) s += q[hd * c.headDim + j]! * keys[li]![t]![kvh * c.headDim + j]!;
            scores[t] = s / Math.sqrt(c.headDim);
          }
          const probs = softmax(scores);
          for (let t = 0; t <= p; t++) {
            for (let j = 0; j < c.headDim; j++) att[hd * c.headDim + j]! += probs[t]! * values[li]![t]![kvh * c.headDim + j]!;
          }
        }
        x = add(x, this.mv(L.o, att));
        // FFN half.
        const h2 = rmsNorm(x, L.ffnNorm, c.eps);
        x = add(x, L.router ? this.moe(L, h2) : this.swiglu(L.gate!, L.up!, L.down!, h2));
      });
      logits.push(this.mv(this.out, rmsNorm(x, this.outNorm, c.eps)));
    }
    return logits;
  }

  /** Softmax over all experts, top-k by probability (ties: lower id), renormalised to sum 1. */
  private moe(L: RefLayer, h: Float64Array): Float64Array {
    const probs = softmax(this.mv(L.router!, h));
    const order = [...probs.keys()].sort((a, b) => probs[b]! - probs[a]! || a - b);
    const chosen = order.slice(0, this.config.nExpertsUsed);
    const total = chosen.reduce((s, e) => s + probs[e]!, 0);
    const y = new Float64Array(h.length);
    for (const e of chosen) {
      const out = this.swiglu(L.gateExps![e]!, L.upExps![e]!, L.downExps![e]!, h);
      const w = probs[e]! / total;
      for (let i = 0; i < y.length; i++) y[i]! += w * out[i]!;
    }
    return y;
  }

  private swiglu(gate: Mat, up: Mat, down: Mat, h: Float64Array): Float64Array {
    const g = this.mv(gate, h);
    const u = this.mv(up, h);
    const a = g.map((v, i) => (v / (1 + Math.exp(-v))) * u[i]!);
    return this.mv(down, a);
  }

  /** m · x, with x rounded as the engine's kernels round it for m's type when asked. */
  private mv(m: Mat, x: Float64Array): Float64Array {
    return matVec(m, this.round ? roundActivation(m.type, x) : x);
  }
}

/** x as the kernels see it for weights of `type` (see ReferenceOptions.roundActivations). */
function roundActivation(type: GgmlType, x: Float64Array): Float64Array {
  const f = Float32Array.from(x);
  switch (type) {
    case GgmlType.BF16:
      return Float64Array.from(f, (v) => bf16ToFp32(fp32ToBf16(v)));
    case GgmlType.Q8_0:
      return Float64Array.from(dequantize(GgmlType.Q8_0, quantize(GgmlType.Q8_0, f), f.length));
    case GgmlType.Q4_K:
    case GgmlType.Q5_K:
    case GgmlType.Q6_K:
      return q8K(f);
    default:
      return Float64Array.from(f);
  }
}

/** ggml quantize_row_q8_K_ref then dequantize: per 256, scale from the largest-magnitude value. */
function q8K(x: Float32Array): Float64Array {
  const y = new Float64Array(x.length);
  for (let b = 0; b < x.length; b += 256) {
    let max = 0;
    let amax = 0;
    for (let i = b; i < b + 256; i++) {
      if (Math.abs(x[i]!) > amax) {
        amax = Math.abs(x[i]!);
        max = x[i]!;
      }
    }
    if (amax === 0) continue;
    const iscale = Math.fround(-127 / max);
    const d = Math.fround(1 / iscale);
    for (let i = b; i < b + 256; i++) y[i] = Math.min(127, Math.round(Math.fround(iscale * x[i]!))) * d;
  }
  return y;
}

async function mat(g: GgufModel, name: string): Promise<Mat> {
  const t = g.tensors.get(name);
  if (!t) throw new Error(`reference: tensor ${name} missing`);
  const cols = t.dims[0]!;
  const rows = t.nElements / cols;
  return { rows, cols, type: t.type, data: dequantize(t.type, await readTensorBytes(g, name), t.nElements) };
}

/** A 3-D [nExperts][rows][cols] tensor as one matrix per expert. */
async function experts(g: GgufModel, name: string): Promise<Mat[]> {
  const t = g.tensors.get(name)!;
  const [cols, rows, n] = t.dims as [number, number, number];
  const bytes = await readTensorBytes(g, name);
  const perExpert = ggmlRowBytes(t.type, cols) * rows;
  const out: Mat[] = [];
  for (let e = 0; e < n; e++) {
    out.push({ rows, cols, type: t.type, data: dequantize(t.type, bytes.subarray(e * perExpert, (e + 1) * perExpert), rows * cols) });
  }
  return out;
}

function row(m: Mat, r: number): Float32Array {
  return m.data.subarray(r * m.cols, (r + 1) * m.cols);
}

function matVec(m: Mat, x: Float64Array): Float64Array {
  const y = new Float64Array(m.rows);
  for (let r = 0; r < m.rows; r++) {
    let s = 0;
    const base = r * m.cols;
    for (let j = 0; j < m.cols; j++) s += m.data[base + j]! * x[j]!;
    y[r] = s;
  }
  return y;
}

function rmsNorm(x: Float64Array, w: Float32Array, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const scale = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * scale * w[i]!);
}

/** In place on v[off, off + d): RMSNorm with w, then rotate-half RoPE at position p. */
function headNormRope(v: Float64Array, off: number, d: number, w: Float32Array, eps: number, p: number, theta: number): void {
  const head = rmsNorm(v.subarray(off, off + d), w, eps);
  const half = d / 2;
  for (let i = 0; i < half; i++) {
    const angle = p * Math.pow(theta, (-2 * i) / d);
    const a = head[i]!;
    const b = head[i + half]!;
    v[off + i] = a * Math.cos(angle) - b * Math.sin(angle);
    v[off + i + half] = b * Math.cos(angle) + a * Math.sin(angle);
  }
}

function softmax(x: Float64Array): Float64Array {
  const m = Math.max(...x);
  const e = x.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

function add(a: Float64Array, b: Float64Array): Float64Array {
  return a.map((v, i) => v + b[i]!);
}
