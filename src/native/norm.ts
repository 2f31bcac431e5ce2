// Typed wrapper of the native pre-norm FFN blocks and output head (native/src/cpu/norm/):
// x += moe(rms_norm(x)) or x += swiglu_mlp(rms_norm(x)), and logits = lm_head(rms_norm(x[rows])).
import { addon } from './addon.ts';
import type { WeightHandle } from './attention.ts';

export type FfnBlockHandle = { readonly __ffnBlock: unique symbol };
export type LmHeadHandle = { readonly __lmHead: unique symbol };

export interface MoeBlockWeights {
  layer: number;
  eps: number;
  /** post_attention_layernorm [hidden] */
  norm: WeightHandle;
  /** mlp.gate (ffn_gate_inp) [nExperts, hidden] */
  router: WeightHandle;
  /** [nExperts, expertFfn, hidden], [nExperts, expertFfn, hidden], [nExperts, hidden, expertFfn] */
  gateExps: WeightHandle;
  upExps: WeightHandle;
  downExps: WeightHandle;
  topK: number;
  normTopKProb: boolean;
  /** Experts backend from the placement rules: auto | AMXInt8 | AMXBF16 | AMXInt4 | AVX512 | llamafile | generic. */
  backend?: string;
}

export interface DenseMlpWeights {
  layer: number;
  eps: number;
  norm: WeightHandle;
  /** gate/up [ffn, hidden], down [hidden, ffn] */
  gate: WeightHandle;
  up: WeightHandle;
  down: WeightHandle;
}

export function ffnBlockCreateMoe(w: MoeBlockWeights): FfnBlockHandle {
  return addon().ffnBlockCreateMoe!(w) as FfnBlockHandle;
}

export function ffnBlockCreateDense(w: DenseMlpWeights): FfnBlockHandle {
  return addon().ffnBlockCreateDense!(w) as FfnBlockHandle;
}

/** x [n, hidden] += ffn(rms_norm(x)). */
export function ffnBlockForward(block: FfnBlockHandle, x: Float32Array, n: number): void {
  addon().ffnBlockForward!(block, x, n);
}

export function ffnBlockDispose(block: FfnBlockHandle): void {
  addon().ffnBlockDispose!(block);
}

/**
 * model.norm [hidden] and lm_head [vocab, hidden] (token_embd when tied); backend: lm_head's linear
 * backend, auto (default), AMXBF16, AMXInt8 or AVX512 (native linear_load checks it).
 */
export function lmHeadCreate(w: { eps: number; norm: WeightHandle; out: WeightHandle; backend?: string }): LmHeadHandle {
  return addon().lmHeadCreate!(w) as LmHeadHandle;
}

/** logits [rows.length, vocab] = lm_head(rms_norm(x[rows])); x [n, hidden]. */
export function lmHeadForward(head: LmHeadHandle, x: Float32Array, n: number, rows: Int32Array, logits: Float32Array): void {
  addon().lmHeadForward!(head, x, n, rows, logits);
}

export function lmHeadDispose(head: LmHeadHandle): void {
  addon().lmHeadDispose!(head);
}

/** out[rows, dim] = rms_norm(x[rows, dim]) * w[dim] on the active ISA's path (tests). */
export function rmsNormRun(x: Float32Array, w: Float32Array, rows: number, dim: number, eps: number, out: Float32Array): void {
  addon().rmsNormRun!(x, w, rows, dim, eps, out);
}
