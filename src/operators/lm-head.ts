// Output head operator (model.norm + lm_head): final RMSNorm and the vocabulary projection, only
// for the batch rows whose logits are wanted (usually one per sequence), on the CPU or the GPU.
import { gpuLmHeadCreate, gpuLmHeadDispose, gpuLmHeadForward, type GpuOpHandle } from '../native/gpu.ts';
import { lmHeadCreate, lmHeadDispose, lmHeadForward, type LmHeadHandle } from '../native/norm.ts';
import type { NativeWeight } from '../native/tensor.ts';
import { gpuFor, operatorDevice, type DeviceKwargs, type GpuRuntime, type OpDevice } from './device.ts';
import type { HiddenState } from './hidden.ts';

export class LMHead {
  readonly device: OpDevice;
  #native: LmHeadHandle | undefined;
  #gpu: GpuOpHandle | undefined;

  constructor(
    readonly module: string,
    readonly eps: number,
    /** Devices, and the CPU linear backend (rules `backend`: auto, AMXBF16, AMXInt8, AVX512). */
    readonly kwargs: DeviceKwargs & { backend?: string } = {},
    readonly gpu?: GpuRuntime,
  ) {
    this.device = operatorDevice(module, kwargs);
  }

  /** norm: model.norm [hidden]; out: lm_head [vocab, hidden] (token_embd when the file ties them). */
  load(w: { norm: NativeWeight; out: NativeWeight }): void {
    try {
      if (this.device.type === 'cuda') this.#gpu = gpuLmHeadCreate({ ctx: gpuFor(this.module, this.device, this.gpu).ctx, eps: this.eps, norm: w.norm.handle, out: w.out.handle });
      else this.#native = lmHeadCreate({ eps: this.eps, norm: w.norm.handle, out: w.out.handle, ...(this.kwargs.backend ? { backend: this.kwargs.backend } : {}) });
    } catch (e) {
      throw new Error(`${this.module}: ${(e as Error).message}`);
    }
  }

  /** logits [rows.length, vocab] from x [n, hidden]. */
  forward(x: HiddenState, rows: Int32Array, logits: Float32Array): void {
    if (this.#gpu) {
      x.device(this.module);
      gpuLmHeadForward(this.#gpu, rows, logits);
      return;
    }
    if (!this.#native) throw new Error(`${this.module}: forward before load`);
    lmHeadForward(this.#native, x.host(), x.n, rows, logits);
  }

  dispose(): void {
    if (this.#native) lmHeadDispose(this.#native);
    if (this.#gpu) gpuLmHeadDispose(this.#gpu);
    this.#native = undefined;
    this.#gpu = undefined;
  }
}
