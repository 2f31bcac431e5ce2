// Attention operator (model.layers.N.self_attn): input RMSNorm, q/k/v projections, q/k RMSNorm,
// NeoX RoPE, KV write, causal GQA attention over each token's KV slot, o_proj and the residual
// add, all in one native call per step (native/src/cpu/attention/attention-block.cc).
import { attentionLayerCreate, attentionLayerDispose, attentionLayerForward, type AttentionLayerHandle } from '../native/attention.ts';
import type { KvCacheHandle } from '../native/kv-cache.ts';
import type { NativeWeight } from '../native/tensor.ts';
import { requireCpu, type DeviceKwargs } from './device.ts';

export interface AttentionShape {
  layer: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  eps: number;
  ropeTheta: number;
}

export interface AttentionWeights {
  /** input_layernorm [hidden] */
  norm: NativeWeight;
  qProj: NativeWeight;
  kProj: NativeWeight;
  vProj: NativeWeight;
  oProj: NativeWeight;
  qNorm?: NativeWeight;
  kNorm?: NativeWeight;
}

export class Attention {
  #native: AttentionLayerHandle | undefined;

  constructor(
    readonly module: string,
    readonly shape: AttentionShape,
    readonly kwargs: DeviceKwargs = {},
  ) {
    requireCpu(module, kwargs);
  }

  /** Checks every shape (the error names the weight) and prepares the projections. */
  load(w: AttentionWeights): void {
    try {
      this.#native = attentionLayerCreate({
        ...this.shape,
        norm: w.norm.handle,
        qNorm: w.qNorm?.handle,
        kNorm: w.kNorm?.handle,
        wq: w.qProj.handle,
        wk: w.kProj.handle,
        wv: w.vProj.handle,
        wo: w.oProj.handle,
      });
    } catch (e) {
      throw new Error(`${this.module}: ${(e as Error).message}`);
    }
  }

  /** x [n, hidden] += attention(x); token i is at positions[i] of KV slot seqIds[i]. */
  forward(x: Float32Array, n: number, positions: Int32Array, seqIds: Int32Array, kv: KvCacheHandle): void {
    if (!this.#native) throw new Error(`${this.module}: forward before load`);
    attentionLayerForward(this.#native, kv, x, n, positions, seqIds);
  }

  dispose(): void {
    if (this.#native) attentionLayerDispose(this.#native);
    this.#native = undefined;
  }
}
