// Which operators of a Qwen3 / Qwen3-MoE model the placement puts on the GPU, and what that costs in
// VRAM (weights as uploaded: GEMM weights as the file stores them or as BF16, see gpuWeightsMode; f32 norms
// and router; the KV cache of the GPU layers; the ubatch buffers), for the fit check before anything is allocated.
import { GgmlType } from '../formats/ggml-types.ts';
import type { GgufModel } from '../formats/gguf-read.ts';
import { kvCacheBytes, type GpuNeeds } from '../native/cuda-fit.ts';
import { deviceName, expertsDevices, operatorDevice, type OpDevice } from '../operators/device.ts';
import type { KwargsLookup } from './architecture.ts';
import { ggufGlobal, ggufLayer } from './names.ts';
import type { ModelConfig } from './types.ts';

export interface GpuPlan {
  /** The GPU every GPU operator uses (one per model). */
  index: number;
  embedding: boolean;
  /** Per layer: attention (and its KV cache) on the GPU. */
  attention: boolean[];
  /** Per layer: the MoE block / dense MLP on the GPU (MoE: router there, experts through the bridge). */
  ffn: boolean[];
  /** Per layer: the routed experts' prefill on the GPU (weights streamed from host RAM, native/src/gpu/gpu-experts*). */
  expertsPrefill: boolean[];
  lmHead: boolean;
  /** Operators on the GPU, for the log line. */
  count: number;
}

/** The GPU part of the placement, or undefined when every operator runs on the CPU. Throws if two GPUs are named. */
export function planGpu(c: ModelConfig, kwargs: KwargsLookup): GpuPlan | undefined {
  const devices: Array<[string, OpDevice]> = [];
  const on = (module: string, d: OpDevice): boolean => {
    devices.push([module, d]);
    return d.type === 'cuda';
  };
  const embedding = on('model.embed_tokens', operatorDevice('model.embed_tokens', kwargs('model.embed_tokens')));
  const attention: boolean[] = [];
  const ffn: boolean[] = [];
  const expertsPrefill: boolean[] = [];
  for (let i = 0; i < c.nLayers; i++) {
    const l = `model.layers.${i}`;
    attention.push(on(`${l}.self_attn`, operatorDevice(`${l}.self_attn`, kwargs(`${l}.self_attn`))));
    ffn.push(on(`${l}.mlp`, operatorDevice(`${l}.mlp`, kwargs(`${l}.mlp`))));
    expertsPrefill.push(c.nExperts > 0 && on(`${l}.mlp.experts`, expertsDevices(`${l}.mlp.experts`, kwargs(`${l}.mlp.experts`)).prefill));
  }
  const lmHead = on('lm_head', operatorDevice('lm_head', kwargs('lm_head')));
  const gpus = devices.filter(([, d]) => d.type === 'cuda');
  if (gpus.length === 0) return undefined;
  const first = gpus[0]!;
  const other = gpus.find(([, d]) => deviceName(d) !== deviceName(first[1]));
  if (other) {
    throw new Error(`${first[0]} is placed on ${deviceName(first[1])} and ${other[0]} on ${deviceName(other[1])}: a model uses one GPU in this version`);
  }
  return { index: (first[1] as { index: number }).index, embedding, attention, ffn, expertsPrefill, lmHead, count: gpus.length };
}

const align256 = (b: number): number => Math.ceil(b / 256) * 256;

/**
 * How the GPU holds linear weights (native/src/gpu/linear.h, MIXTILE_GPU_WEIGHTS): 'quantized' keeps Q8_0 / Q4_K /
 * Q5_K / Q6_K tensors in their GGUF blocks (a quantized GEMV for one token, a shared BF16 scratch for batches),
 * the default; 'bf16' widens every one to BF16 at load (2 bytes a weight; for A/B).
 */
export type GpuWeightsMode = 'quantized' | 'bf16';
export function gpuWeightsMode(env: NodeJS.ProcessEnv = process.env): GpuWeightsMode {
  const v = env.MIXTILE_GPU_WEIGHTS;
  if (!v || v === 'quantized') return 'quantized';
  if (v === 'bf16') return 'bf16';
  throw new Error(`MIXTILE_GPU_WEIGHTS must be 'quantized' or 'bf16', got '${v}'`);
}

/** Types the GPU's quantized GEMV reads directly (mxc_gemv_quant). */
const GEMV_TYPES: readonly GgmlType[] = [GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K];

/**
 * Device bytes of one GPU linear weight made of the named tensors stacked row-wise (`elements` each when a tensor is
 * missing from the file), and the BF16 scratch a batch needs to dequantize it (0 when it is all BF16).
 */
function linearBytes(gguf: GgufModel, names: string[], elements: number[], mode: GpuWeightsMode): { bytes: number; scratch: number } {
  let bytes = 0;
  let quantized = false;
  let all = 0;
  names.forEach((name, i) => {
    const t = gguf.tensors.get(name);
    const n = t?.nElements ?? elements[i]!;
    all += n;
    if (mode === 'quantized' && t && GEMV_TYPES.includes(t.type)) {
      bytes += t.nBytes;
      quantized = true;
    } else {
      bytes += n * 2;
    }
  });
  return { bytes, scratch: quantized ? all * 2 : 0 };
}

/** GEMM weights of the GPU operators as uploaded, and the largest batch scratch among them (the lm_head needs none: its few rows always take the GEMV). */
function gpuLinearWeights(c: ModelConfig, gguf: GgufModel, plan: GpuPlan, mode: GpuWeightsMode): { bytes: number; scratch: number } {
  const q = c.nHeads * c.headDim;
  const kv = c.nKvHeads * c.headDim;
  const h = c.hidden;
  let bytes = 0;
  let scratch = 0;
  const add = (l: { bytes: number; scratch: number }): void => {
    bytes += l.bytes;
    scratch = Math.max(scratch, l.scratch);
  };
  for (let i = 0; i < c.nLayers; i++) {
    if (plan.attention[i]) {
      add(linearBytes(gguf, ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'].map((m) => ggufLayer(i, m)), [q * h, kv * h, kv * h], mode));
      add(linearBytes(gguf, [ggufLayer(i, 'self_attn.o_proj')], [h * q], mode));
    }
    if (plan.ffn[i] && c.nExperts === 0) {
      add(linearBytes(gguf, [ggufLayer(i, 'mlp.gate_proj'), ggufLayer(i, 'mlp.up_proj')], [c.ffn * h, c.ffn * h], mode));
      add(linearBytes(gguf, [ggufLayer(i, 'mlp.down_proj')], [h * c.ffn], mode));
    }
  }
  if (plan.lmHead) {
    const name = gguf.tensors.has(ggufGlobal('lm_head')) ? ggufGlobal('lm_head') : ggufGlobal('model.embed_tokens');
    bytes += linearBytes(gguf, [name], [c.vocab * h], mode).bytes;
  }
  return { bytes, scratch };
}

/**
 * Bytes of the GPU prefill experts (native/src/gpu/gpu-experts*.cc) when some layer streams them: the ring of
 * 3 slots of GpuExperts::GROUP (4) experts, the scratch of one ubatch (grown with 1/4 headroom: gathered BF16
 * rows and f32 outputs of ubatch * top_k pairs, gate/up and SiLU rows, one expert dequantized to BF16, the
 * routing tables), the split's f32 output, the experts' own cuBLAS workspace, and the two prefetch banks
 * (gpu-experts-prefetch.h: with MIXTILE_GPU_EXPERTS_PREFETCH set and not 0, a whole layer each unless _MIB caps them).
 */
export function gpuExpertsBytes(c: ModelConfig, gguf: GgufModel, plan: GpuPlan, ubatch: number, env: NodeJS.ProcessEnv = process.env): number {
  let slot = 0;
  let layer = 0;
  for (let i = 0; i < c.nLayers; i++) {
    if (!plan.expertsPrefill[i]) continue;
    let s = 0;
    let l = 0;
    for (const part of ['mlp.experts.gate_proj', 'mlp.experts.up_proj', 'mlp.experts.down_proj']) {
      const bytes = gguf.tensors.get(ggufLayer(i, part))?.nBytes ?? 0;
      s += align256((4 * bytes) / c.nExperts);
      l += align256(bytes);
    }
    slot = Math.max(slot, s);
    layer = Math.max(layer, l);
  }
  if (layer === 0) return 0;
  const h = c.hidden;
  const f = c.expertFfn;
  const pairs = ubatch * c.nExpertsUsed;
  const headroom = 1.25;
  const scratch = headroom * (pairs * h * 2 + pairs * h * 4 + ubatch * 2 * f * 4 + ubatch * f * 2 + 3 * f * h * 2 + (pairs + 2 * pairs) * 4);
  const splitOut = ubatch * h * 4;
  const cublas = 32 * 2 ** 20;
  let prefetch = 2 * layer;
  // As the native side reads it (atoll): unset, 0 or not a number -> off.
  if ((Number.parseInt(env.MIXTILE_GPU_EXPERTS_PREFETCH ?? '', 10) || 0) === 0) prefetch = 0;
  else if (env.MIXTILE_GPU_EXPERTS_PREFETCH_MIB) {
    // As the native side reads it (atoll): not a number -> 0, negative -> no cap.
    const mib = Number.parseInt(env.MIXTILE_GPU_EXPERTS_PREFETCH_MIB, 10) || 0;
    if (mib >= 0) prefetch = Math.min(prefetch, mib * 2 ** 20);
  }
  return 3 * slot + scratch + splitOut + cublas + prefetch;
}

/** Bytes of the ubatch buffers, pinned-staging twins excluded (context.cc sizes them the same way). */
function workspaceBytes(c: ModelConfig, ubatch: number, nSeq: number, ctx: number): number {
  const q = c.nHeads * c.headDim;
  const kv = c.nKvHeads * c.headDim;
  const ffn = c.nExperts > 0 ? 0 : c.ffn;
  const rows = Math.min(ubatch, 16);
  const perToken = 3 * c.hidden * 4 + Math.max(c.hidden, q, ffn) * 2 + (q + 2 * kv) * 4 + q * 4 + c.nExperts * 4 + 2 * c.nExpertsUsed * 4 + 2 * ffn * 4 + 6 * 4;
  const decode = nSeq * c.nHeads * Math.ceil(ctx / 64) * (c.headDim + 2) * 4;
  const cublas = 32 * 2 ** 20;
  const staging = 2 * 16 * 2 ** 20;
  return ubatch * perToken + rows * (c.hidden + c.vocab) * 4 + decode + cublas + staging;
}

/**
 * VRAM the plan needs: GPU weights as uploaded (gpuWeightsMode), the GPU layers' KV cache (f16/bf16), the ubatch
 * buffers with the quantized weights' BF16 scratch.
 */
export function gpuNeeds(
  c: ModelConfig,
  gguf: GgufModel,
  plan: GpuPlan,
  o: { ctx: number; nSeq: number; ubatch: number; weightsMode?: GpuWeightsMode },
): GpuNeeds & { bytesPerToken: number } {
  const kv = c.nKvHeads * c.headDim;
  const linear = gpuLinearWeights(c, gguf, plan, o.weightsMode ?? gpuWeightsMode());
  let weights = linear.bytes;
  for (let i = 0; i < c.nLayers; i++) {
    if (plan.attention[i]) weights += (c.hidden + 2 * c.headDim) * 4;
    if (plan.ffn[i]) weights += c.nExperts > 0 ? (c.nExperts + 1) * c.hidden * 4 : c.hidden * 4;
  }
  if (plan.lmHead) weights += c.hidden * 4;
  if (plan.embedding) {
    const t = gguf.tensors.get(ggufGlobal('model.embed_tokens'));
    const asStored = t && [GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0].includes(t.type);
    weights += asStored ? t.nBytes : c.vocab * c.hidden * 2;
  }
  const layers = plan.attention.filter(Boolean).length;
  const bytesPerToken = 2 * layers * kv * 2;
  return {
    weightsBytes: weights,
    kvBytes: kvCacheBytes({ layers, slots: o.nSeq, contextLength: o.ctx, kvHeads: c.nKvHeads, headDim: c.headDim, elementBytes: 2 }),
    workspaceBytes: workspaceBytes(c, o.ubatch, o.nSeq, o.ctx) + linear.scratch + gpuExpertsBytes(c, gguf, plan, o.ubatch),
    bytesPerToken,
  };
}
