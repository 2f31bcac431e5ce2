// Attention operator (model.layers.N.self_attn): input RMSNorm, q/k/v projections, q/k RMSNorm,
// NeoX RoPE, KV write, causal GQA attention over each token's KV slot, o_proj and the residual add,
// in one native call per step: on the CPU (native/src/cpu/attention/attention-block.cc, KV in RAM)
// or on the GPU (native/src/gpu/attention.cc, BF16 weights and the KV cache in VRAM).
import { attentionLayerCreate, attentionLayerDispose, attentionLayerForward, type AttentionLayerHandle } from '../native/attention.ts';
import { gpuAttentionCreate, gpuAttentionDispose, gpuAttentionForward, type GpuOpHandle } from '../native/gpu.ts';
import type { KvCacheHandle } from '../native/kv-cache.ts';
import type { NativeWeight } from '../native/tensor.ts';
import { gpuFor, operatorDevice, type DeviceKwargs, type GpuRuntime, type OpDevice } from './device.ts';
import type { HiddenState } from './hidden.ts';

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
  readonly device: OpDevice;
  #native: AttentionLayerHandle | undefined;
  #gpu: GpuOpHandle | undefined;

  constructor(
    readonly module: string,
    readonly shape: AttentionShape,
    readonly kwargs: DeviceKwargs = {},
    readonly gpu?: GpuRuntime,
    /** kwargs of the `.q_proj` Linear child: its `backend` (auto, AMXBF16, AMXInt8, AVX512) serves all four CPU projections. */
    readonly projKwargs: { backend?: string } = {},
  ) {
    this.device = operatorDevice(module, kwargs);
  }

  /** Checks every shape (the error names the weight) and prepares the projections (uploads them for the GPU). */
  load(w: AttentionWeights): void {
    const handles = {
      layer: this.shape.layer,
      eps: this.shape.eps,
      ropeTheta: this.shape.ropeTheta,
      norm: w.norm.handle,
      qNorm: w.qNorm?.handle,
      kNorm: w.kNorm?.handle,
      wq: w.qProj.handle,
      wk: w.kProj.handle,
      wv: w.vProj.handle,
      wo: w.oProj.handle,
    };
    try {
      if (this.device.type === 'cuda') this.#gpu = gpuAttentionCreate({ ctx: gpuFor(this.module, this.device, this.gpu).ctx, ...handles });
      else this.#native = attentionLayerCreate({ ...this.shape, ...handles, ...(this.projKwargs.backend ? { backend: this.projKwargs.backend } : {}) });
    } catch (e) {
      throw new Error(`${this.module}: ${(e as Error).message}`);
    }
  }

  /** x [n, hidden] += attention(x); token i is at positions[i] of KV slot seqIds[i] (RAM or VRAM cache). */
  forward(x: HiddenState, positions: Int32Array, seqIds: Int32Array, kv: KvCacheHandle): void {
    if (this.#gpu) {
      x.device(this.module);
      gpuAttentionForward(this.#gpu);
      return;
    }
    if (!this.#native) throw new Error(`${this.module}: forward before load`);
    attentionLayerForward(this.#native, kv, x.host(), x.n, positions, seqIds);
  }

  dispose(): void {
    if (this.#native) attentionLayerDispose(this.#native);
    if (this.#gpu) gpuAttentionDispose(this.#gpu);
    this.#native = undefined;
    this.#gpu = undefined;
  }
}
