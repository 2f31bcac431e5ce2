// The GGUF layout of a Qwen3-MoE model as llama.cpp's converter writes it (conversion/qwen.py,
// gguf-py constants): tensor names, ggml dims, the HF tensors each comes from, and the metadata
// keys with their stored types. Shared by `synth` (random weights) and `convert` (HF checkpoints).
// Qwen3 uses NeoX RoPE, so unlike LLaMA no q/k row permutation is applied.
import { GGUFValueType } from './gguf-read.ts';
import type { GgufValue } from './gguf-read.ts';

/** Where metadata goes: a GgufWriter, or a collector building an in-memory header (hf-model.ts). */
export interface MetaSink {
  setMeta(key: string, value: GgufValue, type?: GGUFValueType): void;
}

/** Hyperparameters, in GGUF terms. */
export interface Qwen3MoeShape {
  nLayers: number;
  hidden: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  nExperts: number;
  nExpertsUsed: number;
  expertFfn: number;
  /** Dense FFN width (qwen3moe.feed_forward_length); unused by all-MoE layers, kept as real files carry it. */
  ffn: number;
  vocab: number;
  contextLength: number;
  ropeTheta: number;
  rmsEps: number;
  /** No output.weight: the head reuses token_embd (config tie_word_embeddings). */
  tiedEmbeddings?: boolean;
}

/** What a tensor is, for init (synth) and source layout (convert). */
export type Qwen3MoeTensorKind = 'embedding' | 'norm' | 'linear' | 'router' | 'experts' | 'output';

export interface Qwen3MoeTensor {
  name: string;
  /** ggml order: dims[0] = row length. */
  dims: number[];
  kind: Qwen3MoeTensorKind;
  /** Input width of a projection (dims[0]); for init scaling. */
  fanIn: number;
  /** The HF tensor name; for experts, with `{e}` for the expert index (mlp.experts.{e}.gate_proj.weight). */
  hf: string;
}

/** Every tensor in the order llama.cpp-converted files list them per layer. */
export function qwen3moeTensors(s: Qwen3MoeShape): Qwen3MoeTensor[] {
  const q = s.nHeads * s.headDim;
  const kv = s.nKvHeads * s.headDim;
  const t = (name: string, dims: number[], kind: Qwen3MoeTensorKind, hf: string): Qwen3MoeTensor => ({ name, dims, kind, fanIn: dims[0], hf });
  const list = [t('token_embd.weight', [s.hidden, s.vocab], 'embedding', 'model.embed_tokens.weight')];
  for (let i = 0; i < s.nLayers; i++) {
    const b = `blk.${i}.`;
    const h = `model.layers.${i}.`;
    list.push(
      t(`${b}attn_norm.weight`, [s.hidden], 'norm', `${h}input_layernorm.weight`),
      t(`${b}attn_q.weight`, [s.hidden, q], 'linear', `${h}self_attn.q_proj.weight`),
      t(`${b}attn_k.weight`, [s.hidden, kv], 'linear', `${h}self_attn.k_proj.weight`),
      t(`${b}attn_v.weight`, [s.hidden, kv], 'linear', `${h}self_attn.v_proj.weight`),
      t(`${b}attn_output.weight`, [q, s.hidden], 'linear', `${h}self_attn.o_proj.weight`),
      t(`${b}attn_q_norm.weight`, [s.headDim], 'norm', `${h}self_attn.q_norm.weight`),
      t(`${b}attn_k_norm.weight`, [s.headDim], 'norm', `${h}self_attn.k_norm.weight`),
      t(`${b}ffn_norm.weight`, [s.hidden], 'norm', `${h}post_attention_layernorm.weight`),
      t(`${b}ffn_gate_inp.weight`, [s.hidden, s.nExperts], 'router', `${h}mlp.gate.weight`),
      t(`${b}ffn_gate_exps.weight`, [s.hidden, s.expertFfn, s.nExperts], 'experts', `${h}mlp.experts.{e}.gate_proj.weight`),
      t(`${b}ffn_up_exps.weight`, [s.hidden, s.expertFfn, s.nExperts], 'experts', `${h}mlp.experts.{e}.up_proj.weight`),
      t(`${b}ffn_down_exps.weight`, [s.expertFfn, s.hidden, s.nExperts], 'experts', `${h}mlp.experts.{e}.down_proj.weight`),
    );
  }
  list.push(t('output_norm.weight', [s.hidden], 'norm', 'model.norm.weight'));
  if (!s.tiedEmbeddings) list.push(t('output.weight', [s.hidden, s.vocab], 'output', 'lm_head.weight'));
  return list;
}

/** Extra keys some checkpoints need (YaRN context extension). */
export interface Qwen3MoeRopeScaling {
  type: 'yarn' | 'linear';
  factor: number;
  originalContextLength?: number;
}

/**
 * Sets general.* and qwen3moe.* keys with the types llama.cpp's converter stores (counts u32,
 * rope theta and eps f32, file type and quantization version u32).
 */
export function setQwen3MoeMetadata(w: MetaSink, s: Qwen3MoeShape, info: { name: string; fileType: number; description?: string; ropeScaling?: Qwen3MoeRopeScaling }): void {
  const u32 = GGUFValueType.UINT32;
  const f32 = GGUFValueType.FLOAT32;
  w.setMeta('general.architecture', 'qwen3moe');
  w.setMeta('general.type', 'model');
  w.setMeta('general.name', info.name);
  if (info.description) w.setMeta('general.description', info.description);
  const a = (k: string, v: number | string, t?: GGUFValueType) => w.setMeta(`qwen3moe.${k}`, v, t);
  a('block_count', s.nLayers, u32);
  a('context_length', s.contextLength, u32);
  a('embedding_length', s.hidden, u32);
  a('feed_forward_length', s.ffn, u32);
  a('attention.head_count', s.nHeads, u32);
  a('attention.head_count_kv', s.nKvHeads, u32);
  a('rope.freq_base', s.ropeTheta, f32);
  if (info.ropeScaling) {
    a('rope.scaling.type', info.ropeScaling.type);
    a('rope.scaling.factor', info.ropeScaling.factor, f32);
    if (info.ropeScaling.originalContextLength) a('rope.scaling.original_context_length', info.ropeScaling.originalContextLength, u32);
  }
  a('attention.layer_norm_rms_epsilon', s.rmsEps, f32);
  a('expert_used_count', s.nExpertsUsed, u32);
  a('attention.key_length', s.headDim, u32);
  a('attention.value_length', s.headDim, u32);
  a('expert_count', s.nExperts, u32);
  a('expert_feed_forward_length', s.expertFfn, u32);
  w.setMeta('general.file_type', info.fileType, u32);
  w.setMeta('general.quantization_version', 2, u32);
}

/**
 * Sets tokenizer.* keys from a map of values and a map of their type names ("STRING",
 * "ARRAY<INT32>", ...); token lists are cut or padded with unused `[PADn]` tokens to `vocab` rows.
 */
export function setTokenizerMetadata(w: MetaSink, values: ReadonlyMap<string, unknown>, types: Readonly<Record<string, string>>, vocab: number): void {
  for (const [key, value] of values) {
    let v = value as GgufValue;
    if (key === 'tokenizer.ggml.tokens' || key === 'tokenizer.ggml.token_type' || key === 'tokenizer.ggml.scores') {
      v = padVocab(key, v as GgufValue[], vocab);
    }
    const t = types[key];
    const type = t === undefined ? undefined : (GGUFValueType[t.replace(/^ARRAY<(.*)>$/, '$1') as keyof typeof GGUFValueType] as GGUFValueType);
    w.setMeta(key, v, type);
  }
}

/** llama.cpp's USER_DEFINED/UNUSED token type ids (gguf.TokenType). */
const TOKEN_TYPE_UNUSED = 5;

function padVocab(key: string, arr: GgufValue[], vocab: number): GgufValue[] {
  if (arr.length >= vocab) return arr.length === vocab ? arr : arr.slice(0, vocab);
  const fill = (i: number): GgufValue => (key.endsWith('tokens') ? `[PAD${i}]` : key.endsWith('token_type') ? TOKEN_TYPE_UNUSED : -1000);
  return arr.concat(Array.from({ length: vocab - arr.length }, (_, i) => fill(arr.length + i)));
}
