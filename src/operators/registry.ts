// The operators a rule file can place, their kwargs (zod schemas: the documentation and the check),
// and the KTransformers class names accepted as aliases so that its rule files load unchanged.
// The operator implementations live beside this file; rule parsing lives in src/optimize/.
import { z } from 'zod';

export type OperatorName = 'Experts' | 'MoeBlock' | 'Linear' | 'Attention' | 'RMSNorm' | 'RotaryEmbedding' | 'Embedding' | 'LMHead' | 'Default';

/** `cpu`, `cuda` or `cuda:N`. */
export const DEVICE = z.string().regex(/^(cpu|cuda(:\d+)?)$/, 'expected a device: cpu, cuda or cuda:N');
export type Device = z.infer<typeof DEVICE>;

/**
 * CPU expert backends. `auto` (the default) takes the best this machine has. AMXInt4 (also the
 * KTransformers name) keeps Q4_K experts as 4-bit panels on AMX-INT8 tiles, no requantization;
 * experts of other types get AMXInt8 instead (native/src/cpu/amx/amx-experts.cc).
 */
export const EXPERT_BACKENDS = ['auto', 'AMXInt8', 'AMXBF16', 'AMXInt4', 'AVX512', 'llamafile', 'generic'] as const;
export type ExpertBackend = (typeof EXPERT_BACKENDS)[number];

/** Where expert math runs in a phase: CPU kernels (with `backend`) or the GPU. */
export const EXPERTS_OPS = ['cpu', 'gpu'] as const;
/** Linear implementations: dequantized GEMM, GEMM on quantized weights, or a CPU kernel. */
export const LINEAR_OPS = ['dense', 'quantized', 'cpu'] as const;
/**
 * CPU linear backends for prefill-sized calls (decode always reads the source weights): `auto`
 * (AMX-BF16 panels where AMX exists, for BF16 and quantized weights), `AMXBF16`, `AMXInt8`, or
 * `AVX512` (no AMX repack). The attention operator takes its `q_proj` Linear's backend for all four
 * projections, lm_head its own; MIXTILE_AMX_LINEAR overrides `auto` only. A named AMX backend on a CPU
 * without AMX falls back to AVX512 with a warning (src/optimize/place.ts).
 */
export const LINEAR_BACKENDS = ['auto', 'AMXBF16', 'AMXInt8', 'AVX512'] as const;

/** KTransformers' op class names → ours; a `note` is a warning that the op is served approximately. */
export const OP_ALIASES: Readonly<Record<string, { op: string; note?: string }>> = {
  KExpertsCPU: { op: 'cpu' },
  KExpertsTorch: { op: 'gpu' },
  KExpertsMarlin: { op: 'gpu', note: 'no Marlin kernels: experts run dequantized on the GPU' },
  KLinearTorch: { op: 'dense' },
  KLinearMarlin: { op: 'quantized' },
  VLinearMarlin: { op: 'quantized' },
  KLinearQ8: { op: 'quantized' },
  KLinearFP8: { op: 'quantized', note: 'no FP8 weights: the GGUF quantization is used as stored' },
  KLinearCPUInfer: { op: 'cpu' },
  KLinearIPEXLLM: { op: 'cpu', note: 'no IPEX-LLM: the CPU kernel is used' },
};

function opSchema(ops: readonly string[]) {
  // KTransformers writes `prefill_op: null` for "same as generate".
  return z.union([z.enum(ops as [string, ...string[]]), z.null()]).optional();
}

const devices = {
  /** Device of the prompt (prefill) phase. */
  prefillDevice: DEVICE.optional(),
  /** Device of token-by-token generation. */
  generateDevice: DEVICE.optional(),
};

export const KWARGS = {
  Experts: z.strictObject({
    ...devices,
    backend: z.enum(EXPERT_BACKENDS).optional(),
    prefillOp: opSchema(EXPERTS_OPS),
    generateOp: opSchema(EXPERTS_OPS),
    /** Where the experts' summed output goes (the next operator's device). */
    outDevice: DEVICE.optional(),
    /**
     * Decode steps of a GPU MoE block (KTransformers' name): of each token's top-k experts, this many with the
     * lowest routing weights run on the CPU while the GPU computes the next layer, and join one layer late
     * (native/src/gpu/deferred-experts.h). A maximum: at most a quarter of the experts per token are held
     * back. Changes the math; 0 (the default when absent) is exact.
     */
    maxDeferredExpertsPerToken: z.number().int().min(0).optional(),
    /** Where held-back experts join: `moe` (with the next layer's expert output, as KTransformers) or `attention` (after the next layer's attention, before its router). */
    deferredExpertsJoin: z.enum(['moe', 'attention']).optional(),
  }),
  MoeBlock: z.strictObject({ ...devices }),
  Linear: z.strictObject({ ...devices, backend: z.enum(LINEAR_BACKENDS).optional(), prefillOp: opSchema(LINEAR_OPS), generateOp: opSchema(LINEAR_OPS) }),
  Attention: z.strictObject({ ...devices }),
  RMSNorm: z.strictObject({ ...devices }),
  RotaryEmbedding: z.strictObject({ ...devices }),
  Embedding: z.strictObject({ ...devices }),
  LMHead: z.strictObject({ ...devices, backend: z.enum(LINEAR_BACKENDS).optional(), prefillOp: opSchema(LINEAR_OPS), generateOp: opSchema(LINEAR_OPS) }),
  Default: z.strictObject({ ...devices }),
} satisfies Record<OperatorName, z.ZodObject>;

export type ExpertsKwargs = z.infer<typeof KWARGS.Experts>;
export type LinearKwargs = z.infer<typeof KWARGS.Linear>;
export type OperatorKwargs = { [K in OperatorName]: z.infer<(typeof KWARGS)[K]> }[OperatorName];

/** A class name a rule may give in `replace.class`. */
export interface OperatorAlias {
  operator: OperatorName;
  /** Warning shown when a rule uses this alias: what Mixtile does differently. */
  note?: string;
  /** KTransformers kwargs this alias accepts that Mixtile ignores, with the reason shown as a warning. */
  ignoredKwargs?: Readonly<Record<string, string>>;
}

const KT = 'ktransformers.operators';
const LAYERWISE = { perLayerPrefillIntputThreshold: 'layer-wise prefill is not implemented; the whole model prefills at once' };

/**
 * Every accepted `replace.class`, by full name. Our own names are accepted too, and a
 * KTransformers path is also found by its last segment (KTransformersExperts).
 */
const ALIASES: ReadonlyMap<string, OperatorAlias> = new Map<string, OperatorAlias>([
  ['Experts', { operator: 'Experts' }],
  ['MoeBlock', { operator: 'MoeBlock' }],
  ['Linear', { operator: 'Linear' }],
  ['Attention', { operator: 'Attention' }],
  ['RMSNorm', { operator: 'RMSNorm' }],
  ['RotaryEmbedding', { operator: 'RotaryEmbedding' }],
  ['Embedding', { operator: 'Embedding' }],
  ['LMHead', { operator: 'LMHead' }],
  ['Default', { operator: 'Default' }],
  ['default', { operator: 'Default' }],

  [`${KT}.experts.KTransformersExperts`, { operator: 'Experts' }],
  [`${KT}.experts.KTransformersExpertsV2`, { operator: 'Experts' }],
  [`${KT}.experts.KExpertsCPU`, { operator: 'Experts' }],
  [`${KT}.experts.KExpertsTorch`, { operator: 'Experts' }],
  [`${KT}.experts.KExpertsMarlin`, { operator: 'Experts', note: 'no Marlin kernels: experts run dequantized on the GPU' }],

  [`${KT}.experts.KQwen3MoeSparseMoeBlock`, { operator: 'MoeBlock' }],
  [`${KT}.experts.KQwen3MoeSparseMoeBlockV2`, { operator: 'MoeBlock' }],
  [`${KT}.experts.KQwen2MoeSparseMoeBlock`, { operator: 'MoeBlock' }],
  [`${KT}.experts.KQwen2MoeSparseMoeBlockV2`, { operator: 'MoeBlock' }],
  [`${KT}.experts.KDeepseekV3MoE`, { operator: 'MoeBlock' }],
  [`${KT}.experts.KDeepseekV3MoEV2`, { operator: 'MoeBlock' }],
  [`${KT}.experts.KMistralSparseMoEBlock`, { operator: 'MoeBlock' }],

  [`${KT}.linear.KTransformersLinear`, { operator: 'Linear' }],
  [`${KT}.linear.KLinearTorch`, { operator: 'Linear' }],
  [`${KT}.linear.KLinearMarlin`, { operator: 'Linear' }],
  [`${KT}.linear.KLinearFP8`, { operator: 'Linear', note: 'no FP8 weights: the GGUF quantization is used as stored' }],
  [`${KT}.linear.KLinearCPUInfer`, { operator: 'Linear' }],

  [`${KT}.attention.KQwen3MoeAttention`, { operator: 'Attention' }],
  [`${KT}.attention.KQwen2MoeAttention`, { operator: 'Attention' }],
  [`${KT}.attention.KLlamaAttention`, { operator: 'Attention' }],
  [`${KT}.balance_serve_attention.KQwen3MoeAttention`, { operator: 'Attention' }],
  [`${KT}.balance_serve_attention.KQwen2MoeAttention`, { operator: 'Attention' }],
  [
    `${KT}.balance_serve_attention.flashinfer_attn`,
    { operator: 'Attention', note: 'no FlashInfer: the built-in attention kernel is used', ignoredKwargs: { absorbForPrefill: 'MLA weight absorption applies to DeepSeek attention only' } },
  ],

  [`${KT}.RoPE.RotaryEmbedding`, { operator: 'RotaryEmbedding' }],
  [`${KT}.RoPE.KQwen3MoeRotaryEmbedding`, { operator: 'RotaryEmbedding' }],
  [`${KT}.RoPE.YarnRotaryEmbedding`, { operator: 'RotaryEmbedding', note: 'RoPE scaling is taken from the model metadata, not from the class' }],
  [`${KT}.RoPE.YarnRotaryEmbeddingV3`, { operator: 'RotaryEmbedding', note: 'RoPE scaling is taken from the model metadata, not from the class' }],

  [`${KT}.layernorm.RMSNorm`, { operator: 'RMSNorm' }],
  [`${KT}.layernorm.KQwen3MoeRMSNorm`, { operator: 'RMSNorm' }],
  [`${KT}.layernorm.KQwen2MoeRMSNorm`, { operator: 'RMSNorm' }],

  [`${KT}.embedding.KEmbedding`, { operator: 'Embedding' }],

  // Dense MLPs (shared experts), the router and whole-model wrappers run as the model's own code
  // on the devices the rule gives.
  [`${KT}.mlp.KQwen2MoeMLP`, { operator: 'Default' }],
  [`${KT}.mlp.kDeepseekV3MLP`, { operator: 'Default' }],
  [`${KT}.gate.KMoEGate`, { operator: 'Default', note: 'the router runs inside the MoE block operator' }],
  [`${KT}.models.KQwen2MoeModel`, { operator: 'Default', ignoredKwargs: LAYERWISE }],
  [`${KT}.models.KQwen3MoeModel`, { operator: 'Default', ignoredKwargs: LAYERWISE }],
  [`${KT}.models.KDeepseekV2Model`, { operator: 'Default', ignoredKwargs: LAYERWISE }],
]);

const BY_LAST_SEGMENT: ReadonlyMap<string, OperatorAlias> = (() => {
  const m = new Map<string, OperatorAlias>();
  for (const [full, alias] of ALIASES) m.set(full.slice(full.lastIndexOf('.') + 1), alias);
  return m;
})();

/** The operator a `replace.class` names, or undefined when it is unknown. */
export function resolveOperatorClass(className: string): OperatorAlias | undefined {
  return ALIASES.get(className) ?? BY_LAST_SEGMENT.get(className.slice(className.lastIndexOf('.') + 1));
}

/** Our operator names, for "known: ..." lists in error messages. */
export const OPERATOR_NAMES: readonly OperatorName[] = Object.keys(KWARGS) as OperatorName[];
