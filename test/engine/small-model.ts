// A very small random Qwen3-MoE / Qwen3 GGUF (vocab of a few hundred, hidden 64) for fast engine
// tests and debugging: exercises every code path of the forward at a fraction of synth tiny's cost
// (synth tiny keeps the real 151936 vocab). Weights are scaled so logits are far from uniform.
import { GgmlType } from '../../src/formats/ggml-types.ts';
import { GgufWriter } from '../../src/formats/gguf-write.ts';
import { quantize } from '../../src/formats/quant.ts';

export interface SmallModelOptions {
  arch?: 'qwen3moe' | 'qwen3';
  /** Type of the big matrices (projections, experts, embeddings); norms and router stay F32. */
  type?: GgmlType;
  seed?: number;
  vocab?: number;
  hidden?: number;
  nLayers?: number;
  nHeads?: number;
  nKvHeads?: number;
  headDim?: number;
  nExperts?: number;
  nExpertsUsed?: number;
  ffn?: number;
  tied?: boolean;
  /** Tensors to leave out (bad-input tests). */
  drop?: string[];
  /** Metadata values written over the computed ones, e.g. { 'qwen3moe.attention.head_count': 8 }. */
  meta?: Record<string, number | string>;
}

/** Writes the model to `path`. */
export async function writeSmallModel(path: string, o: SmallModelOptions = {}): Promise<void> {
  const arch = o.arch ?? 'qwen3moe';
  const type = o.type ?? GgmlType.F32;
  // K-quants need rows of 256; keep every row length a multiple of it for them.
  const big = type === GgmlType.Q4_K || type === GgmlType.Q5_K || type === GgmlType.Q6_K;
  const vocab = o.vocab ?? 320;
  const hidden = o.hidden ?? (big ? 256 : 64);
  const nLayers = o.nLayers ?? 2;
  const nHeads = o.nHeads ?? 4;
  const nKvHeads = o.nKvHeads ?? 2;
  const headDim = o.headDim ?? (big ? 64 : 32);
  const nExperts = o.nExperts ?? 6;
  const nUsed = o.nExpertsUsed ?? 2;
  const ffn = o.ffn ?? (big ? 256 : 96);
  let state = (o.seed ?? 1) >>> 0 || 1;
  // xorshift32 + Box-Muller-free uniform noise: enough for random weights.
  const rand = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 4294967296 - 0.5;
  };
  const w = new GgufWriter(path);
  const k = (s: string) => `${arch}.${s}`;
  w.setMeta('general.architecture', arch);
  w.setMeta('general.name', 'mixtile-small-test');
  w.setMeta(k('block_count'), nLayers);
  w.setMeta(k('context_length'), 4096);
  w.setMeta(k('embedding_length'), hidden);
  w.setMeta(k('attention.head_count'), nHeads);
  w.setMeta(k('attention.head_count_kv'), nKvHeads);
  w.setMeta(k('attention.key_length'), headDim);
  w.setMeta(k('attention.value_length'), headDim);
  w.setMeta(k('rope.freq_base'), 1_000_000);
  w.setMeta(k('attention.layer_norm_rms_epsilon'), 1e-6);
  if (arch === 'qwen3moe') {
    w.setMeta(k('expert_count'), nExperts);
    w.setMeta(k('expert_used_count'), nUsed);
    w.setMeta(k('expert_feed_forward_length'), ffn);
  }
  w.setMeta(k('feed_forward_length'), ffn);

  for (const [key, v] of Object.entries(o.meta ?? {})) w.setMeta(key, v);

  const tensors: Array<{ name: string; type: GgmlType; dims: number[]; scale: number; offset?: number }> = [];
  const add = (name: string, t: GgmlType, dims: number[], scale: number, offset = 0) => tensors.push({ name, type: t, dims, scale, offset });
  add('token_embd.weight', type, [hidden, vocab], 2);
  for (let i = 0; i < nLayers; i++) {
    const b = `blk.${i}.`;
    add(`${b}attn_norm.weight`, GgmlType.F32, [hidden], 0.5, 1);
    add(`${b}attn_q.weight`, type, [hidden, nHeads * headDim], 4 / Math.sqrt(hidden));
    add(`${b}attn_k.weight`, type, [hidden, nKvHeads * headDim], 4 / Math.sqrt(hidden));
    add(`${b}attn_v.weight`, type, [hidden, nKvHeads * headDim], 2 / Math.sqrt(hidden));
    add(`${b}attn_output.weight`, type, [nHeads * headDim, hidden], 2 / Math.sqrt(hidden));
    add(`${b}attn_q_norm.weight`, GgmlType.F32, [headDim], 0.5, 1);
    add(`${b}attn_k_norm.weight`, GgmlType.F32, [headDim], 0.5, 1);
    add(`${b}ffn_norm.weight`, GgmlType.F32, [hidden], 0.5, 1);
    if (arch === 'qwen3moe') {
      add(`${b}ffn_gate_inp.weight`, GgmlType.F32, [hidden, nExperts], 4 / Math.sqrt(hidden));
      add(`${b}ffn_gate_exps.weight`, type, [hidden, ffn, nExperts], 4 / Math.sqrt(hidden));
      add(`${b}ffn_up_exps.weight`, type, [hidden, ffn, nExperts], 4 / Math.sqrt(hidden));
      add(`${b}ffn_down_exps.weight`, type, [ffn, hidden, nExperts], 4 / Math.sqrt(ffn));
    } else {
      add(`${b}ffn_gate.weight`, type, [hidden, ffn], 4 / Math.sqrt(hidden));
      add(`${b}ffn_up.weight`, type, [hidden, ffn], 4 / Math.sqrt(hidden));
      add(`${b}ffn_down.weight`, type, [ffn, hidden], 4 / Math.sqrt(ffn));
    }
  }
  add('output_norm.weight', GgmlType.F32, [hidden], 0.5, 1);
  if (!o.tied) add('output.weight', type, [hidden, vocab], 8 / Math.sqrt(hidden));
  const kept = tensors.filter((t) => !o.drop?.includes(t.name));
  for (const t of kept) w.addTensor(t.name, t.type, t.dims);
  await w.begin();
  for (const t of kept) {
    const n = t.dims.reduce((a, b) => a * b, 1);
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) x[i] = (t.offset ?? 0) + rand() * 2 * t.scale;
    await w.writeTensor(t.name, quantize(t.type, x));
  }
  await w.close();
}
