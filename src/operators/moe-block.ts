// MoE block operator (model.layers.N.mlp, Qwen3MoeSparseMoeBlock): post-attention RMSNorm,
// router softmax + top-k (+ renormalisation), SwiGLU experts and the residual add in one native
// call per step. The rules' backend picks the experts kernel family (AMX-INT8, AMX-BF16, AVX-512);
// within it the native dispatch chooses per call (e.g. AVX-512 for experts with few tokens).
import { ffnBlockCreateMoe, ffnBlockDispose, ffnBlockForward, type FfnBlockHandle } from '../native/norm.ts';
import type { NativeWeight } from '../native/tensor.ts';
import { requireCpu, type DeviceKwargs } from './device.ts';

/** What a decoder layer's MLP slot offers: the MoE block here, the dense MLP in mlp.ts. */
export interface FfnOperator {
  readonly module: string;
  /** x [n, hidden] += mlp(post_attention_layernorm(x)). */
  forward(x: Float32Array, n: number): void;
  dispose(): void;
}

export interface MoeShape {
  layer: number;
  eps: number;
  nExpertsUsed: number;
  normTopKProb: boolean;
}

export interface MoeWeights {
  /** post_attention_layernorm [hidden] */
  norm: NativeWeight;
  /** mlp.gate (router) [nExperts, hidden] */
  gate: NativeWeight;
  /** mlp.experts: gate/up [nExperts, expertFfn, hidden], down [nExperts, hidden, expertFfn] */
  gateExps: NativeWeight;
  upExps: NativeWeight;
  downExps: NativeWeight;
}

export class MoeBlock implements FfnOperator {
  #native: FfnBlockHandle | undefined;

  constructor(
    readonly module: string,
    readonly shape: MoeShape,
    readonly kwargs: DeviceKwargs = {},
    /** kwargs of the `.experts` child (backend, devices). */
    readonly expertsKwargs: DeviceKwargs & { backend?: string } = {},
  ) {
    requireCpu(module, kwargs);
    requireCpu(`${module}.experts`, expertsKwargs);
  }

  load(w: MoeWeights): void {
    try {
      this.#native = ffnBlockCreateMoe({
        layer: this.shape.layer,
        eps: this.shape.eps,
        norm: w.norm.handle,
        router: w.gate.handle,
        gateExps: w.gateExps.handle,
        upExps: w.upExps.handle,
        downExps: w.downExps.handle,
        topK: this.shape.nExpertsUsed,
        normTopKProb: this.shape.normTopKProb,
        ...(this.expertsKwargs.backend ? { backend: this.expertsKwargs.backend } : {}),
      });
    } catch (e) {
      throw new Error(`${this.module}: ${(e as Error).message}`);
    }
  }

  forward(x: Float32Array, n: number): void {
    if (!this.#native) throw new Error(`${this.module}: forward before load`);
    ffnBlockForward(this.#native, x, n);
  }

  dispose(): void {
    if (this.#native) ffnBlockDispose(this.#native);
    this.#native = undefined;
  }
}
