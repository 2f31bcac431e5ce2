// Output head operator (model.norm + lm_head): final RMSNorm and the vocabulary projection, only
// for the batch rows whose logits are wanted (usually one per sequence).
import { lmHeadCreate, lmHeadDispose, lmHeadForward, type LmHeadHandle } from '../native/norm.ts';
import type { NativeWeight } from '../native/tensor.ts';
import { requireCpu, type DeviceKwargs } from './device.ts';

export class LMHead {
  #native: LmHeadHandle | undefined;

  constructor(
    readonly module: string,
    readonly eps: number,
    readonly kwargs: DeviceKwargs = {},
  ) {
    requireCpu(module, kwargs);
  }

  /** norm: model.norm [hidden]; out: lm_head [vocab, hidden] (token_embd when the file ties them). */
  load(w: { norm: NativeWeight; out: NativeWeight }): void {
    try {
      this.#native = lmHeadCreate({ eps: this.eps, norm: w.norm.handle, out: w.out.handle });
    } catch (e) {
      throw new Error(`${this.module}: ${(e as Error).message}`);
    }
  }

  /** logits [rows.length, vocab] from x [n, hidden]. */
  forward(x: Float32Array, n: number, rows: Int32Array, logits: Float32Array): void {
    if (!this.#native) throw new Error(`${this.module}: forward before load`);
    lmHeadForward(this.#native, x, n, rows, logits);
  }

  dispose(): void {
    if (this.#native) lmHeadDispose(this.#native);
    this.#native = undefined;
  }
}
