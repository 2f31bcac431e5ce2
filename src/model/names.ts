// GGUF tensor names <-> Hugging Face module names, for the names that several architectures share
// (llama.cpp's LLM_TENSOR_* spellings). A tensor only one architecture has is mapped in its file.

/** One weight of a module: the GGUF tensor that holds it and the HF parameter name. */
export interface TensorName {
  gguf: string;
  hf: string;
}

const GLOBAL: ReadonlyArray<readonly [string, string]> = [
  ['token_embd', 'model.embed_tokens'],
  ['output_norm', 'model.norm'],
  ['output', 'lm_head'],
];

// Per-layer names: blk.{i}.<gguf> <-> model.layers.{i}.<hf>.
const LAYER: ReadonlyArray<readonly [string, string]> = [
  ['attn_norm', 'input_layernorm'],
  ['attn_q', 'self_attn.q_proj'],
  ['attn_k', 'self_attn.k_proj'],
  ['attn_v', 'self_attn.v_proj'],
  ['attn_output', 'self_attn.o_proj'],
  ['attn_q_norm', 'self_attn.q_norm'],
  ['attn_k_norm', 'self_attn.k_norm'],
  ['ffn_norm', 'post_attention_layernorm'],
  // Dense FFN (qwen3, llama).
  ['ffn_gate', 'mlp.gate_proj'],
  ['ffn_up', 'mlp.up_proj'],
  ['ffn_down', 'mlp.down_proj'],
  // MoE: router and the stacked routed experts [nExperts, ...] of one layer.
  ['ffn_gate_inp', 'mlp.gate'],
  ['ffn_gate_exps', 'mlp.experts.gate_proj'],
  ['ffn_up_exps', 'mlp.experts.up_proj'],
  ['ffn_down_exps', 'mlp.experts.down_proj'],
];

const LAYER_BY_GGUF = new Map(LAYER);
const LAYER_BY_HF = new Map(LAYER.map(([g, h]) => [h, g] as const));
const GLOBAL_BY_GGUF = new Map(GLOBAL);
const GLOBAL_BY_HF = new Map(GLOBAL.map(([g, h]) => [h, g] as const));

/** GGUF tensor name of a global module's weight: ggufName('model.norm') = 'output_norm.weight'. */
export function ggufGlobal(hfModule: string, param = 'weight'): string {
  const g = GLOBAL_BY_HF.get(hfModule);
  if (!g) throw new Error(`no GGUF name for module ${hfModule}`);
  return `${g}.${param}`;
}

/** GGUF tensor name of a layer module's weight: ggufLayer(3, 'self_attn.q_proj') = 'blk.3.attn_q.weight'. */
export function ggufLayer(layer: number, hfPart: string, param = 'weight'): string {
  const g = LAYER_BY_HF.get(hfPart);
  if (!g) throw new Error(`no GGUF name for module model.layers.${layer}.${hfPart}`);
  return `blk.${layer}.${g}.${param}`;
}

/**
 * HF parameter name of a GGUF tensor, or undefined when the name is not a shared one:
 * hfName('blk.3.ffn_gate_exps.weight') = 'model.layers.3.mlp.experts.gate_proj.weight'.
 */
export function hfName(gguf: string): string | undefined {
  const m = /^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$/.exec(gguf);
  if (m) {
    const h = LAYER_BY_GGUF.get(m[2]!);
    return h === undefined ? undefined : `model.layers.${m[1]}.${h}.${m[3]}`;
  }
  const g = /^([a-z_]+)\.(weight|bias)$/.exec(gguf);
  if (g) {
    const h = GLOBAL_BY_GGUF.get(g[1]!);
    return h === undefined ? undefined : `${h}.${g[2]}`;
  }
  return undefined;
}
