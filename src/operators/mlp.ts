// Dense MLP operator (model.layers.N.mlp of Qwen3 dense): post-attention RMSNorm, SwiGLU
// (down(silu(gate(x)) * up(x))) and the residual add in one native call per step.
import { ffnBlockCreateDense, ffnBlockDispose, ffnBlockForward, type FfnBlockHandle } from '../native/norm.ts';
import type { NativeWeight } from '../native/tensor.ts';
import { requireCpu, type DeviceKwargs } from './device.ts';
import type { FfnOperator } from './moe-block.ts';

export interface MlpWeights {
  norm: NativeWeight;
  gateProj: NativeWeight;
  upProj: NativeWeight;
  downProj: NativeWeight;
}

export class Mlp implements FfnOperator {
  #native: FfnBlockHandle | undefined;

  constructor(
    readonly module: string,
    readonly shape: { layer: number; eps: number },
    readonly kwargs: DeviceKwargs = {},
  ) {
    requireCpu(module, kwargs);
  }

  load(w: MlpWeights): void {
    try {
      this.#native = ffnBlockCreateDense({ ...this.shape, norm: w.norm.handle, gate: w.gateProj.handle, up: w.upProj.handle, down: w.downProj.handle });
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
