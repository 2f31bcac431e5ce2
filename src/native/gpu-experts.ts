// Routed experts of one layer on the GPU, the CPU, or split between both at once, host in / host out
// (native/src/gpu/gpu-experts-napi.cc): for tests and `mixtile bench --op experts --device`. The
// engine's hybrid forward uses the same native code from its experts bridge, without JS in between.
import { addon } from './addon.ts';
import type { ExpertsHandle } from './experts.ts';

/** cpu: every expert on the CPU kernels; gpu: every expert with tokens streamed to the GPU; split: the cost model divides them. */
export type ExpertsPlacement = 'cpu' | 'gpu' | 'split';

export interface GpuExpertsResult {
  /** Wall milliseconds of the experts (x already on the GPU; y read back after). */
  ms: number;
  /** Wall milliseconds of the CPU part (concurrent with the GPU part). */
  cpuMs: number;
  /** GPU milliseconds of the GPU part (events on its stream). */
  gpuMs: number;
  gpuExperts: number;
  cpuExperts: number;
  /** The cost model's predictions for this call (0 before it was calibrated, with an explicit mask). */
  predictedCpuMs: number;
  predictedGpuMs: number;
  /** Weight bytes streamed over PCIe. */
  gpuBytes: number;
  /** Whether the weights are pinned in place (else staged through pinned buffers), and why not. */
  pinned: boolean;
  unpinnedReason?: string;
}

/** The cost model's constants, measured on a layer's weights (or from MIXTILE_EXPERT_COST). */
export interface ExpertCost {
  pcieGbps: number;
  gpuBaseUs: number;
  gpuRowUs: number;
  gpuCallUs: number;
  cpuBaseUs: number;
  cpuRowUs: number;
  /** Raw bytes of one expert (gate + up + down). */
  expertBytes: number;
  source: string;
  /** Measured / predicted-alone time of each side in split calls so far (moving average): the split factors. */
  cpuScale: number;
  gpuScale: number;
  /** The same as a MIXTILE_EXPERT_COST value. */
  env: string;
}

/**
 * out[n, hidden] = the routed experts of x (routing given: ids/weights [n, topK]). `onGpu` (nExpert
 * flags) fixes which experts run on the GPU and overrides `placement`. Throws when there is no usable
 * CUDA library or device (see cudaInfo()).
 */
export function gpuExpertsForward(
  h: ExpertsHandle,
  x: Float32Array,
  nTokens: number,
  ids: Int32Array,
  weights: Float32Array,
  topK: number,
  placement: ExpertsPlacement,
  out: Float32Array,
  onGpu?: Uint8Array,
): GpuExpertsResult {
  return addon().gpuExpertsForward(h.handle, x, nTokens, ids, weights, topK, placement, out, onGpu) as GpuExpertsResult;
}

/** The cost model's constants for this layer (measured on first use: tens of milliseconds). */
export function gpuExpertsCost(h: ExpertsHandle): ExpertCost {
  return addon().gpuExpertsCost(h.handle) as ExpertCost;
}

/** Unpins the layer's weights and drops its GPU state (before disposing the experts handle). */
export function gpuExpertsRelease(h: ExpertsHandle): void {
  addon().gpuExpertsRelease(h.handle);
}

export type ExpertCostConstants = Pick<ExpertCost, 'pcieGbps' | 'gpuBaseUs' | 'gpuRowUs' | 'gpuCallUs' | 'cpuBaseUs' | 'cpuRowUs'> & {
  /** Factors on each side's time while both run at once (default 1; gpuExpertsCost's cpuScale / gpuScale). */
  splitCpuX?: number;
  splitGpuX?: number;
};

/** The cost model's split alone (no GPU needed): which experts go to the GPU given tokens per expert. */
export function expertsSplitPlan(
  cost: ExpertCostConstants,
  rows: number[],
  expertBytes: number,
  placement: ExpertsPlacement,
): { onGpu: number[]; cpuMs: number; gpuMs: number } {
  return addon().expertsSplitPlan(cost, rows, expertBytes, placement) as { onGpu: number[]; cpuMs: number; gpuMs: number };
}
