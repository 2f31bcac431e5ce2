// Typed wrapper of the GPU side of the engine (native/src/gpu/): one context per model (device, stream,
// ubatch buffers in VRAM, pinned staging, the KV cache in VRAM) and the GPU operators built on it.
// Weights go to the GPU natively from their mapped bytes; JS only passes handles.
import { addon } from './addon.ts';
import type { NativeHandle } from './tensor.ts';

export type GpuContextHandle = { readonly __gpuContext: unique symbol };
export type GpuOpHandle = { readonly __gpuOp: unique symbol };

export interface GpuContextOptions {
  device: number;
  hidden: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  /** Routed experts and top-k (0 for dense models). */
  nExperts: number;
  topK: number;
  /** Dense MLP width (0 for MoE models). */
  ffn: number;
  vocab: number;
  /** Most tokens per forward step. */
  ubatch: number;
  /** GPU KV cache element type: 'f16' or 'bf16'. */
  kvType: 'f16' | 'bf16';
  nSeq: number;
  ctx: number;
  /** Per model layer: whether its attention (and so its KV cache) is on the GPU. */
  kvLayers: boolean[];
}

/** What ran where since the context was made (tests check the hybrid path is taken). */
export interface GpuStats {
  forwards: number;
  attention: number;
  moe: number;
  mlp: number;
  lmHeadRows: number;
  embedTokens: number;
  expertsCpuTokens: number;
  expertsGpuTokens: number;
  h2dBytes: number;
  d2hBytes: number;
  kvBytes: number;
  /** Host milliseconds: issuing attention blocks; waiting for the GPU before the CPU experts; the experts; the output head. */
  attentionIssueMs: number;
  expertsWaitMs: number;
  expertsCpuMs: number;
  lmHeadMs: number;
  /** Decode steps' experts held back a layer (max_deferred_experts_per_token): parts held, and host ms computing them. */
  expertsDeferred: number;
  expertsDeferredMs: number;
  /** MIXTILE_GPU_PROFILE=1 (native/src/gpu/decode-profile.h): decode MoE layers timed, and GPU ms per part over them. */
  profileLayers: number;
  profileAttentionMs: number;
  profileRouteMs: number;
  profileD2hMs: number;
  profileH2dAddMs: number;
  profileIssueGapMs: number;
  /** Decode-step CUDA graphs captured and replayed (native/src/gpu/graphs.h). */
  graphsCaptured: number;
  graphLaunches: number;
  /** Captures that failed (that work is then issued directly). */
  graphCaptureFailures: number;
  /** Memory in use on the device (total - free: this model's context, weights, KV and buffers, plus other users). */
  vramUsedBytes?: number;
  /** Device bytes this process allocated through the CUDA library (weights, KV, buffers, cuBLAS workspaces), now and at their highest. */
  vramAllocatedBytes?: number;
  vramPeakBytes?: number;
  /** The prefill experts split between the CPU and the GPU (native/src/gpu/gpu-experts-split.h), once used: sums over
   * the planned calls, each side's measured and predicted ms, the cost model's constants (MIXTILE_EXPERT_COST syntax). */
  expertsSplit?: {
    calls: number;
    cpuExperts: number;
    gpuExperts: number;
    cpuMs: number;
    gpuMs: number;
    predictedCpuMs: number;
    predictedGpuMs: number;
    cost: string;
    cpuScale: number;
    gpuScale: number;
  };
  device: number;
  library: string;
}

export function gpuContextCreate(o: GpuContextOptions): GpuContextHandle {
  return addon().gpuContextCreate!({ ...o, kvType: o.kvType === 'bf16' ? 2 : 1 }) as GpuContextHandle;
}
export function gpuContextDispose(ctx: GpuContextHandle): void {
  addon().gpuContextDispose!(ctx);
}
/** Frees the weight upload staging once every GPU operator is loaded. */
export function gpuLoadDone(ctx: GpuContextHandle): void {
  addon().gpuLoadDone!(ctx);
}
/** Uploads the ubatch's positions / KV slots once and plans its attention calls. */
export function gpuBatchBegin(ctx: GpuContextHandle, positions: Int32Array, seqIds: Int32Array, n: number): void {
  addon().gpuBatchBegin!(ctx, positions, seqIds, n);
}
export function gpuHiddenToDevice(ctx: GpuContextHandle, x: Float32Array, n: number): void {
  addon().gpuHiddenToDevice!(ctx, x, n);
}
export function gpuHiddenToHost(ctx: GpuContextHandle, x: Float32Array, n: number): void {
  addon().gpuHiddenToHost!(ctx, x, n);
}
/** Copies positions [0, nTokens) of every GPU layer's KV from slot src to slot dst. */
export function gpuKvCopy(ctx: GpuContextHandle, src: number, dst: number, nTokens: number): void {
  addon().gpuKvCopy!(ctx, src, dst, nTokens);
}
export function gpuStats(ctx: GpuContextHandle): GpuStats {
  return addon().gpuStats!(ctx) as GpuStats;
}

export function gpuAttentionCreate(o: {
  ctx: GpuContextHandle;
  layer: number;
  eps: number;
  ropeTheta: number;
  norm: NativeHandle;
  qNorm?: NativeHandle;
  kNorm?: NativeHandle;
  wq: NativeHandle;
  wk: NativeHandle;
  wv: NativeHandle;
  wo: NativeHandle;
}): GpuOpHandle {
  return addon().gpuAttentionCreate!(o) as GpuOpHandle;
}
export function gpuAttentionForward(op: GpuOpHandle): void {
  addon().gpuAttentionForward!(op);
}
export function gpuAttentionDispose(op: GpuOpHandle): void {
  addon().gpuAttentionDispose!(op);
}

export function gpuMoeCreate(o: {
  ctx: GpuContextHandle;
  layer: number;
  eps: number;
  norm: NativeHandle;
  router: NativeHandle;
  gateExps: NativeHandle;
  upExps: NativeHandle;
  downExps: NativeHandle;
  topK: number;
  normTopKProb: boolean;
  backend?: string;
  /** Rules: experts prefill_device cuda (the GPU experts path of the bridge). */
  expertsPrefillOnGpu?: boolean;
  /** Decode steps: experts per token held back to the next layer (native/src/gpu/deferred-experts.h), and where they join. */
  deferExperts?: number;
  deferJoin?: 'moe' | 'attention';
}): GpuOpHandle {
  return addon().gpuMoeCreate!(o) as GpuOpHandle;
}
export function gpuMlpCreate(o: { ctx: GpuContextHandle; layer: number; eps: number; norm: NativeHandle; gate: NativeHandle; up: NativeHandle; down: NativeHandle }): GpuOpHandle {
  return addon().gpuMlpCreate!(o) as GpuOpHandle;
}
export function gpuFfnForward(op: GpuOpHandle): void {
  addon().gpuFfnForward!(op);
}
export function gpuFfnDispose(op: GpuOpHandle): void {
  addon().gpuFfnDispose!(op);
}

/** The table in VRAM (as stored for F32/F16/BF16/Q8_0, else widened to BF16); rows gathered there. */
export function gpuEmbeddingCreate(o: { ctx: GpuContextHandle; table: NativeHandle }): GpuOpHandle {
  return addon().gpuEmbeddingCreate!(o) as GpuOpHandle;
}
export function gpuEmbeddingForward(op: GpuOpHandle, tokens: Int32Array, n: number): void {
  addon().gpuEmbeddingForward!(op, tokens, n);
}
export function gpuEmbeddingDispose(op: GpuOpHandle): void {
  addon().gpuEmbeddingDispose!(op);
}

export function gpuLmHeadCreate(o: { ctx: GpuContextHandle; eps: number; norm: NativeHandle; out: NativeHandle }): GpuOpHandle {
  return addon().gpuLmHeadCreate!(o) as GpuOpHandle;
}
/** logits [rows.length, vocab] for rows of the current ubatch; waits for the GPU. */
export function gpuLmHeadForward(op: GpuOpHandle, rows: Int32Array, logits: Float32Array): void {
  addon().gpuLmHeadForward!(op, rows, logits);
}
export function gpuLmHeadDispose(op: GpuOpHandle): void {
  addon().gpuLmHeadDispose!(op);
}
