// Fused routed-experts operator through the addon: one call per MoE layer for the whole batch.
import { addon } from './addon.ts';
import type { NativeHandle, NativeWeight } from './tensor.ts';

export interface ExpertsWeightsIn {
  /** [hidden, ffn, nExpert] (ggml order), any supported type. */
  gate: NativeWeight;
  up: NativeWeight;
  /** [ffn, hidden, nExpert]. */
  down: NativeWeight;
  /** ffn_gate_inp: [hidden, nExpert], F32/F16/BF16. */
  router: NativeWeight;
}

export interface MoeOptions {
  topK: number;
  /** Renormalise the top-k probabilities to sum 1 (Qwen3: true). */
  normTopKProb: boolean;
}

export class ExpertsHandle {
  readonly hidden: number;
  readonly ffn: number;
  readonly nExpert: number;
  #handle: NativeHandle | undefined;

  constructor(handle: NativeHandle, hidden: number, ffn: number, nExpert: number) {
    this.#handle = handle;
    this.hidden = hidden;
    this.ffn = ffn;
    this.nExpert = nExpert;
  }

  get handle(): NativeHandle {
    if (!this.#handle) throw new Error(`experts [${this.nExpert} x ${this.hidden} x ${this.ffn}] were disposed`);
    return this.#handle;
  }

  /** Name of the dispatch entry a call would use ("generic", or an AMX entry). */
  kernelName(nTokens: number, topK: number): string {
    return addon().expertsKernelName(this.handle, nTokens, topK) as string;
  }

  dispose(): void {
    if (this.#handle) addon().expertsDispose(this.#handle);
    this.#handle = undefined;
  }
}

/** Checks shapes and prepares the experts; the weight handles may be disposed afterwards. */
export function expertsLoad(w: ExpertsWeightsIn): ExpertsHandle {
  const h = addon().expertsLoad(w.gate.handle, w.up.handle, w.down.handle, w.router.handle) as NativeHandle;
  return new ExpertsHandle(h, w.gate.dims[0], w.gate.dims[1], w.gate.dims[2] ?? 1);
}

/** out[n, hidden] = routed experts of x[n, hidden] (router softmax -> top-k -> experts -> weighted sum). */
export function moeForward(h: ExpertsHandle, x: Float32Array, nTokens: number, opts: MoeOptions, out: Float32Array): void {
  addon().moeForward(h.handle, x, nTokens, opts.topK, opts.normTopKProb, out);
}

/** Router only: ids/weights [nTokens, topK]. */
export function moeRoute(
  h: ExpertsHandle,
  x: Float32Array,
  nTokens: number,
  opts: MoeOptions,
  ids: Int32Array,
  weights: Float32Array,
): void {
  addon().moeRoute(h.handle, x, nTokens, opts.topK, opts.normTopKProb, ids, weights);
}

/** Experts with precomputed routing: ids/weights [nTokens, topK]. */
export function moeForwardRouted(
  h: ExpertsHandle,
  x: Float32Array,
  nTokens: number,
  ids: Int32Array,
  weights: Float32Array,
  topK: number,
  out: Float32Array,
): void {
  addon().moeForwardRouted(h.handle, x, nTokens, ids, weights, topK, out);
}
