// Dense MLP operator (model.layers.N.mlp of Qwen3 dense): post-attention RMSNorm, SwiGLU
// (down(silu(gate(x)) * up(x))) and the residual add in one native call per step, on the CPU or on
// the GPU (gate and up stacked into one BF16 GEMM there).
import { gpuFfnDispose, gpuFfnForward, gpuMlpCreate, type GpuOpHandle } from '../native/gpu.ts';
import { ffnBlockCreateDense, ffnBlockDispose, ffnBlockForward, type FfnBlockHandle } from '../native/norm.ts';
import type { NativeWeight } from '../native/tensor.ts';
import { gpuFor, operatorDevice, type DeviceKwargs, type GpuRuntime, type OpDevice } from './device.ts';
import type { HiddenState } from './hidden.ts';
import type { FfnOperator } from './moe-block.ts';

export interface MlpWeights {
  norm: NativeWeight;
  gateProj: NativeWeight;
  upProj: NativeWeight;
  downProj: NativeWeight;
}

export class Mlp implements FfnOperator {
  readonly device: OpDevice;
  #native: FfnBlockHandle | undefined;
  #gpu: GpuOpHandle | undefined;

  constructor(
    readonly module: string,
    readonly shape: { layer: number; eps: number },
    readonly kwargs: DeviceKwargs = {},
    readonly gpu?: GpuRuntime,
  ) {
    this.device = operatorDevice(module, kwargs);
  }

  load(w: MlpWeights): void {
    const common = { ...this.shape, norm: w.norm.handle, gate: w.gateProj.handle, up: w.upProj.handle, down: w.downProj.handle };
    try {
      if (this.device.type === 'cuda') this.#gpu = gpuMlpCreate({ ctx: gpuFor(this.module, this.device, this.gpu).ctx, ...common });
      else this.#native = ffnBlockCreateDense(common);
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
