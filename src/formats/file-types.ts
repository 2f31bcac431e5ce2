// llama.cpp file types (llama_ftype, the `general.file_type` key) and the per-tensor type each
// one gives a Qwen3-MoE-style model, as llama-quantize chooses them (src/llama-quant.cpp:
// tensor_allows_quantization, llama_tensor_get_type_impl, tensor_type_fallback) and, for the
// float types, as convert_hf_to_gguf.py writes them.
import { GGML_TYPES, GgmlType } from './ggml-types.ts';

export enum LlamaFileType {
  ALL_F32 = 0,
  MOSTLY_F16 = 1,
  MOSTLY_Q8_0 = 7,
  MOSTLY_Q4_K_S = 14,
  MOSTLY_Q4_K_M = 15,
  MOSTLY_Q5_K_S = 16,
  MOSTLY_Q5_K_M = 17,
  MOSTLY_Q6_K = 18,
  MOSTLY_BF16 = 32,
}

/** User-facing names (llama-quantize spelling) -> file type. */
export const FILE_TYPE_NAMES: ReadonlyMap<string, LlamaFileType> = new Map([
  ['F32', LlamaFileType.ALL_F32],
  ['F16', LlamaFileType.MOSTLY_F16],
  ['BF16', LlamaFileType.MOSTLY_BF16],
  ['Q8_0', LlamaFileType.MOSTLY_Q8_0],
  ['Q6_K', LlamaFileType.MOSTLY_Q6_K],
  ['Q5_K_M', LlamaFileType.MOSTLY_Q5_K_M],
  ['Q5_K_S', LlamaFileType.MOSTLY_Q5_K_S],
  ['Q4_K_M', LlamaFileType.MOSTLY_Q4_K_M],
  ['Q4_K_S', LlamaFileType.MOSTLY_Q4_K_S],
]);

/** The file type named `name` (case-insensitive); throws listing the known names. */
export function parseFileType(name: string): LlamaFileType {
  const t = FILE_TYPE_NAMES.get(name.toUpperCase());
  if (t === undefined) throw new Error(`unknown file type "${name}" (known: ${[...FILE_TYPE_NAMES.keys()].join(', ')})`);
  return t;
}

/** Display name of a general.file_type value, e.g. 15 -> "Q4_K_M"; unknown ids print as "ftype 12". */
export function fileTypeName(id: number): string {
  for (const [name, t] of FILE_TYPE_NAMES) if (t === id) return name;
  return `ftype ${id}`;
}

/** llama_ftype_get_default_type: the type of a tensor with no special rule. */
const DEFAULT_TYPE: Record<LlamaFileType, GgmlType> = {
  [LlamaFileType.ALL_F32]: GgmlType.F32,
  [LlamaFileType.MOSTLY_F16]: GgmlType.F16,
  [LlamaFileType.MOSTLY_BF16]: GgmlType.BF16,
  [LlamaFileType.MOSTLY_Q8_0]: GgmlType.Q8_0,
  [LlamaFileType.MOSTLY_Q6_K]: GgmlType.Q6_K,
  [LlamaFileType.MOSTLY_Q5_K_M]: GgmlType.Q5_K,
  [LlamaFileType.MOSTLY_Q5_K_S]: GgmlType.Q5_K,
  [LlamaFileType.MOSTLY_Q4_K_M]: GgmlType.Q4_K,
  [LlamaFileType.MOSTLY_Q4_K_S]: GgmlType.Q4_K,
};

export interface TensorTypeContext {
  /** ggml dims of the tensor (dims[0] = row length). */
  dims: number[];
  nLayers: number;
  nExperts: number;
  /** No output.weight: llama-quantize then gives token_embd the output head's type. */
  tiedEmbeddings?: boolean;
}

/** llama-quantize's use_more_bits: the first and last eighth of layers and every third in between. */
function useMoreBits(i: number, n: number): boolean {
  const e = Math.trunc(n / 8);
  return i < e || i >= Math.trunc((7 * n) / 8) || (i - e) % 3 === 2;
}

function layerOf(name: string): number {
  const m = /^blk\.(\d+)\./.exec(name);
  if (!m) throw new Error(`tensor "${name}": cannot tell its layer (expected "blk.N." prefix)`);
  return Number(m[1]);
}

/**
 * tensor_type_fallback: K-quants need rows of a multiple of 256; llama.cpp then falls back to a
 * 32-block type, or F16 if even that does not fit.
 */
function fallback(type: GgmlType, rowLength: number): GgmlType {
  const block = GGML_TYPES.get(type)!.blockSize;
  if (rowLength % block === 0) return type;
  const next = type === GgmlType.Q4_K ? GgmlType.Q5_0 : type === GgmlType.Q5_K ? GgmlType.Q5_1 : type === GgmlType.Q6_K ? GgmlType.Q8_0 : type;
  return rowLength % GGML_TYPES.get(next)!.blockSize === 0 ? next : GgmlType.F16;
}

/**
 * The ggml type a tensor gets in a file of `fileType`. Norms, 1-D tensors and the router
 * (ffn_gate_inp) stay F32 as both the converter and llama-quantize keep them. The quantized mixes
 * follow llama-quantize for an untied-output MoE model without imatrix (the 70B-only attn_v rule
 * and the Falcon rules do not apply to Qwen3-MoE and are left out).
 */
export function tensorTypeFor(fileType: LlamaFileType, name: string, ctx: TensorTypeContext): GgmlType {
  const def = DEFAULT_TYPE[fileType];
  if (def === undefined) throw new Error(`file type ${fileType} is not supported (known: ${[...FILE_TYPE_NAMES.keys()].join(', ')})`);
  const keepF32 = ctx.dims.length < 2 || name.endsWith('_norm.weight') || name.includes('ffn_gate_inp.weight') || !name.endsWith('weight');
  if (keepF32) return GgmlType.F32;
  if (def === GgmlType.F32 || def === GgmlType.F16 || def === GgmlType.BF16) return def;

  const ft = fileType;
  let t = def;
  if (name === 'output.weight' || (ctx.tiedEmbeddings && name === 'token_embd.weight')) {
    // Output head: Q8_0 if rows do not fit the default's blocks, else Q6_K unless the mix is Q8_0.
    t = ctx.dims[0] % GGML_TYPES.get(def)!.blockSize !== 0 ? GgmlType.Q8_0 : def !== GgmlType.Q8_0 ? GgmlType.Q6_K : def;
  } else if (name === 'token_embd.weight') {
    // No rule for the K-quant and Q8_0 mixes: the default type.
  } else if (name.includes('attn_v.weight')) {
    const i = layerOf(name);
    if ((ft === LlamaFileType.MOSTLY_Q4_K_M || ft === LlamaFileType.MOSTLY_Q5_K_M) && useMoreBits(i, ctx.nLayers)) t = GgmlType.Q6_K;
    else if (ft === LlamaFileType.MOSTLY_Q4_K_S && i < 4) t = GgmlType.Q5_K;
    // "for the 8-expert model, bumping this to Q8_0 trades just ~128MB" (Mixtral rule, any mix)
    if (ctx.nExperts === 8) t = GgmlType.Q8_0;
  } else if (name.includes('attn_k.weight')) {
    if (ctx.nExperts === 8) t = GgmlType.Q8_0;
  } else if (name.includes('ffn_down')) {
    const i = layerOf(name);
    if (ft === LlamaFileType.MOSTLY_Q4_K_M && useMoreBits(i, ctx.nLayers)) t = GgmlType.Q6_K;
    else if (ft === LlamaFileType.MOSTLY_Q5_K_M && useMoreBits(i, ctx.nLayers)) t = GgmlType.Q6_K;
    else if (ft === LlamaFileType.MOSTLY_Q4_K_S && i < Math.trunc(ctx.nLayers / 8)) t = GgmlType.Q5_K;
  } else if (name.includes('attn_output.weight')) {
    if (ctx.nExperts === 8 && (ft === LlamaFileType.MOSTLY_Q4_K_S || ft === LlamaFileType.MOSTLY_Q4_K_M)) t = GgmlType.Q5_K;
  }
  return fallback(t, ctx.dims[0]);
}
