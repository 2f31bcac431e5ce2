// MoE block operator (model.layers.N.mlp, Qwen3MoeSparseMoeBlock): post-attention RMSNorm, router
// softmax + top-k (+ renormalisation), SwiGLU experts and the residual add in one native call per
// step. On the CPU all of it runs there; on the GPU the norm, router and top-k run on the GPU and the
// routed experts stay in RAM on the CPU kernels (native/src/gpu/experts-bridge.cc), the hidden state
// crossing over in pinned memory. The rules' backend picks the experts kernel family (AMX-INT8,
// AMX-BF16, AVX-512); within it the native dispatch chooses per call.
import { gpuFfnDispose, gpuFfnForward, gpuMoeCreate, type GpuOpHandle } from '../native/gpu.ts';
import { ffnBlockCreateMoe, ffnBlockDispose, ffnBlockForward, type FfnBlockHandle } from '../native/norm.ts';
import type { NativeWeight } from '../native/tensor.ts';
import { deviceName, expertsDevices, gpuFor, operatorDevice, type DeviceKwargs, type GpuRuntime, type OpDevice } from './device.ts';
import type { HiddenState } from './hidden.ts';

/** What a decoder layer's MLP slot offers: the MoE block here, the dense MLP in mlp.ts. */
export interface FfnOperator {
  readonly module: string;
  readonly device: OpDevice;
  /** x [n, hidden] += mlp(post_attention_layernorm(x)). */
  forward(x: HiddenState): void;
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
  readonly device: OpDevice;
  /** Where the experts' prefill runs (the GPU path of the bridge when cuda); decode is always the CPU. */
  readonly expertsPrefill: OpDevice;
  #native: FfnBlockHandle | undefined;
  #gpu: GpuOpHandle | undefined;

  constructor(
    readonly module: string,
    readonly shape: MoeShape,
    readonly kwargs: DeviceKwargs = {},
    /** kwargs of the `.experts` child (backend, devices, decode deferral). */
    readonly expertsKwargs: DeviceKwargs & { backend?: string; maxDeferredExpertsPerToken?: number; deferredExpertsJoin?: 'moe' | 'attention' } = {},
    readonly gpu?: GpuRuntime,
  ) {
    this.device = operatorDevice(module, kwargs);
    this.expertsPrefill = expertsDevices(`${module}.experts`, expertsKwargs).prefill;
    if (this.expertsPrefill.type === 'cuda') {
      if (this.device.type !== 'cuda') {
        throw new Error(`${module}.experts: prefill_device ${deviceName(this.expertsPrefill)} needs the MoE block (${module}) on that GPU too; it is on ${deviceName(this.device)}`);
      }
      gpuFor(`${module}.experts`, this.expertsPrefill, gpu);
    }
  }

  load(w: MoeWeights): void {
    const common = {
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
    };
    try {
      if (this.device.type === 'cuda') {
        this.#gpu = gpuMoeCreate({
          ctx: gpuFor(this.module, this.device, this.gpu).ctx,
          ...common,
          expertsPrefillOnGpu: this.expertsPrefill.type === 'cuda',
          ...deferral(this.expertsKwargs, this.shape.nExpertsUsed, `${this.module}.experts`),
        });
      } else {
        this.#native = ffnBlockCreateMoe(common);
      }
    } catch (e) {
      throw new Error(`${this.module}: ${(e as Error).message}`);
    }
  }

  forward(x: HiddenState): void {
    if (this.#gpu) {
      x.device(this.module);
      gpuFfnForward(this.#gpu);
      return;
    }
    if (!this.#native) throw new Error(`${this.module}: forward before load`);
    ffnBlockForward(this.#native, x.host(), x.n);
  }

  dispose(): void {
    if (this.#native) ffnBlockDispose(this.#native);
    if (this.#gpu) gpuFfnDispose(this.#gpu);
    this.#native = undefined;
    this.#gpu = undefined;
  }
}

/**
 * Decode deferral of a GPU MoE block's experts (native/src/gpu/deferred-experts.h): the rules' kwargs, or
 * MIXTILE_DEFER_EXPERTS / MIXTILE_DEFER_JOIN over them (A/B timing and accuracy runs without a rules file).
 * The kwarg is a maximum (as its name says): at most a quarter of the experts per token are held back, so a
 * preset's 2 serves top-8 models (Qwen3-30B-A3B, 235B-A22B) and leaves top-2/top-4 models exact; the
 * environment variable is taken as it is. A CPU MoE block has nothing to overlap with and ignores them.
 */
export function deferral(
  kwargs: { maxDeferredExpertsPerToken?: number; deferredExpertsJoin?: 'moe' | 'attention' },
  topK: number,
  module: string,
): { deferExperts: number; deferJoin: 'moe' | 'attention' } {
  const envN = process.env.MIXTILE_DEFER_EXPERTS;
  const envJoin = process.env.MIXTILE_DEFER_JOIN;
  const fromEnv = envN !== undefined && envN !== '';
  const asked = fromEnv ? Number(envN) : (kwargs.maxDeferredExpertsPerToken ?? 0);
  if (!Number.isInteger(asked) || asked < 0 || asked > topK) {
    throw new Error(`${module}: max_deferred_experts_per_token ${envN !== undefined && envN !== '' ? `(MIXTILE_DEFER_EXPERTS=${envN}) ` : ''}must be an integer in [0, ${topK}] (the experts per token)`);
  }
  const join = envJoin !== undefined && envJoin !== '' ? envJoin : (kwargs.deferredExpertsJoin ?? 'moe');
  if (join !== 'moe' && join !== 'attention') throw new Error(`${module}: MIXTILE_DEFER_JOIN must be moe or attention, got "${join}"`);
  return { deferExperts: fromEnv ? asked : Math.min(asked, Math.floor(topK / 4)), deferJoin: join };
}
