// Embedding operator (model.embed_tokens): dequantizes the token rows of token_embd natively.
import { embedRows } from '../native/embed.ts';
import type { NativeWeight } from '../native/tensor.ts';
import { requireCpu, type DeviceKwargs } from './device.ts';

export class Embedding {
  #table: NativeWeight | undefined;

  constructor(
    readonly module: string,
    readonly kwargs: DeviceKwargs = {},
  ) {
    requireCpu(module, kwargs);
  }

  /** table: token_embd [vocab, hidden] (ggml dims [hidden, vocab]). */
  load(weights: { weight: NativeWeight }): void {
    this.#table = weights.weight;
  }

  /** out [tokens.length, hidden] = rows of the table; throws naming the token on an id outside the vocabulary. */
  forward(tokens: Int32Array, out: Float32Array): void {
    if (!this.#table) throw new Error(`${this.module}: forward before load`);
    embedRows(this.#table.handle, tokens, tokens.length, out);
  }
}
