// Typed wrapper of the native attention layer (native/src/cpu/attention/): one call runs the
// attention half of a decoder layer for a whole batch, KV write included.
import { addon } from './addon.ts';
import type { KvCacheHandle } from './kv-cache.ts';
import type { NativeHandle } from './tensor.ts';

/** A weight's native handle (NativeWeight.handle, src/native/tensor.ts). */
export type WeightHandle = NativeHandle;
export type AttentionLayerHandle = { readonly __attentionLayer: unique symbol };

export interface AttentionLayerWeights {
  layer: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  eps: number;
  ropeTheta: number;
  /** input_layernorm [hidden] */
  norm: WeightHandle;
  /** q_norm / k_norm [headDim]; absent for models without them. */
  qNorm?: WeightHandle;
  kNorm?: WeightHandle;
  /** q_proj [nHeads*headDim, hidden], k/v_proj [nKvHeads*headDim, hidden], o_proj [hidden, nHeads*headDim] */
  wq: WeightHandle;
  wk: WeightHandle;
  wv: WeightHandle;
  wo: WeightHandle;
  /** The projections' linear backend: auto (default), AMXBF16, AMXInt8 or AVX512 (native linear_load checks it). */
  backend?: string;
}

/** Checks shapes (throws naming the weight) and prepares the projections. */
export function attentionLayerCreate(w: AttentionLayerWeights): AttentionLayerHandle {
  return addon().attentionLayerCreate!(w) as AttentionLayerHandle;
}

/** x [n, hidden] += attention block(x); positions/seqIds [n]. */
export function attentionLayerForward(
  layer: AttentionLayerHandle,
  kv: KvCacheHandle,
  x: Float32Array,
  n: number,
  positions: Int32Array,
  seqIds: Int32Array,
): void {
  addon().attentionLayerForward!(layer, kv, x, n, positions, seqIds);
}

export function attentionLayerDispose(layer: AttentionLayerHandle): void {
  addon().attentionLayerDispose!(layer);
}

/** Attention core dispatch entries this CPU runs, best first (e.g. ['avx512', 'scalar']). */
export function attentionKernels(): string[] {
  return addon().attentionKernels!() as string[];
}

/**
 * Runs one attention core entry directly over `layer` of the cache (kernel tests):
 * q, out [n, nHeads, headDim]. Returns false when the entry declines these shapes.
 */
export function attentionKernelRun(
  name: string,
  kv: KvCacheHandle,
  layer: number,
  n: number,
  nHeads: number,
  q: Float32Array,
  out: Float32Array,
  positions: Int32Array,
  seqIds: Int32Array,
): boolean {
  return addon().attentionKernelRun!(name, kv, layer, n, nHeads, q, out, positions, seqIds) as boolean;
}
