// Embedding operator (model.embed_tokens): the token rows of token_embd, dequantized natively on the
// CPU (the table stays in RAM), or gathered on the GPU from a copy of the table in VRAM.
import { embedRows } from '../native/embed.ts';
import { gpuEmbeddingCreate, gpuEmbeddingDispose, gpuEmbeddingForward, type GpuOpHandle } from '../native/gpu.ts';
import type { NativeWeight } from '../native/tensor.ts';
import { gpuFor, operatorDevice, type DeviceKwargs, type GpuRuntime, type OpDevice } from './device.ts';
import type { HiddenState } from './hidden.ts';

export class Embedding {
  readonly device: OpDevice;
  #table: NativeWeight | undefined;
  #gpu: GpuOpHandle | undefined;

  constructor(
    readonly module: string,
    readonly kwargs: DeviceKwargs = {},
    readonly gpu?: GpuRuntime,
  ) {
    this.device = operatorDevice(module, kwargs);
  }

  /** table: token_embd [vocab, hidden] (ggml dims [hidden, vocab]). */
  load(weights: { weight: NativeWeight }): void {
    if (this.device.type === 'cpu') {
      this.#table = weights.weight;
      return;
    }
    try {
      this.#gpu = gpuEmbeddingCreate({ ctx: gpuFor(this.module, this.device, this.gpu).ctx, table: weights.weight.handle });
    } catch (e) {
      throw new Error(`${this.module}: ${(e as Error).message}`);
    }
  }

  /** x = rows of the table for `tokens`; throws naming the token on an id outside the vocabulary. */
  forward(tokens: Int32Array, x: HiddenState): void {
    if (this.#gpu) {
      x.deviceForWrite(this.module);
      gpuEmbeddingForward(this.#gpu, tokens, tokens.length);
      return;
    }
    if (!this.#table) throw new Error(`${this.module}: forward before load`);
    embedRows(this.#table.handle, tokens, tokens.length, x.hostForWrite());
  }

  dispose(): void {
    if (this.#gpu) gpuEmbeddingDispose(this.#gpu);
    this.#gpu = undefined;
  }
}
