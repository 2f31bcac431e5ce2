// The residual stream x [n, hidden] of one ubatch, and where it is now: in a host Float32Array (CPU
// operators) or in the GPU context's buffer (GPU operators). It crosses over only when consecutive
// operators run on different devices, so a GPU-only stretch of layers keeps x on the GPU throughout.
import { gpuBatchBegin, gpuHiddenToDevice, gpuHiddenToHost } from '../native/gpu.ts';
import type { GpuRuntime } from './device.ts';

export class HiddenState {
  #host: Float32Array;
  #onDevice = false;

  private constructor(
    readonly n: number,
    readonly hidden: number,
    readonly gpu: GpuRuntime | undefined,
  ) {
    this.#host = new Float32Array(n * hidden);
  }

  /** A new ubatch: with a GPU, its positions and KV slots are uploaded once here for every GPU layer. */
  static begin(n: number, hidden: number, positions: Int32Array, seqIds: Int32Array, gpu: GpuRuntime | undefined): HiddenState {
    if (gpu) gpuBatchBegin(gpu.ctx, positions, seqIds, n);
    return new HiddenState(n, hidden, gpu);
  }

  get where(): 'host' | 'device' {
    return this.#onDevice ? 'device' : 'host';
  }

  /** x on the host for reading and updating in place (copied down first if the GPU has it). */
  host(): Float32Array {
    if (this.#onDevice) {
      gpuHiddenToHost(this.gpu!.ctx, this.#host, this.n);
      this.#onDevice = false;
    }
    return this.#host;
  }

  /** x for an operator that overwrites all of it on the host (the embedding): no copy down. */
  hostForWrite(): Float32Array {
    this.#onDevice = false;
    return this.#host;
  }

  /** Makes x current in the GPU context (copied up if the host has it); returns the runtime. */
  device(module: string): GpuRuntime {
    if (!this.gpu) throw new Error(`${module}: runs on the GPU, but the model has no GPU context`);
    if (!this.#onDevice) {
      gpuHiddenToDevice(this.gpu.ctx, this.#host, this.n);
      this.#onDevice = true;
    }
    return this.gpu;
  }

  /** For an operator that wrote all of x on the GPU itself (the GPU embedding gather). */
  deviceForWrite(module: string): GpuRuntime {
    if (!this.gpu) throw new Error(`${module}: runs on the GPU, but the model has no GPU context`);
    this.#onDevice = true;
    return this.gpu;
  }
}
