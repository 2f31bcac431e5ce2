// Which positions of each KV slot hold valid K/V, and the batch checks that keep it so: a
// sequence's tokens in a batch must continue its slot exactly (positions length, length+1, ...).
// The native cache (src/native/kv-cache.ts) holds the data; this holds the lengths.
import { kvCacheCopy, type KvCacheHandle } from '../native/kv-cache.ts';
import type { ForwardBatch, KvSlots } from './types.ts';

export class KvSlotTable implements KvSlots {
  readonly #lengths: Int32Array;

  constructor(
    readonly nSeq: number,
    readonly ctxSize: number,
    readonly cache: () => KvCacheHandle,
  ) {
    this.#lengths = new Int32Array(nSeq);
  }

  #slot(seq: number, what: string): number {
    if (!Number.isInteger(seq) || seq < 0 || seq >= this.nSeq) throw new RangeError(`kv.${what}: slot ${seq} outside [0, ${this.nSeq})`);
    return seq;
  }

  clear(seq: number): void {
    this.#lengths[this.#slot(seq, 'clear')] = 0;
  }

  truncate(seq: number, nTokens: number): void {
    const s = this.#slot(seq, 'truncate');
    if (!Number.isInteger(nTokens) || nTokens < 0) throw new RangeError(`kv.truncate: nTokens ${nTokens} must be a non-negative integer`);
    this.#lengths[s] = Math.min(this.#lengths[s]!, nTokens);
  }

  copy(src: number, dst: number, nTokens: number): void {
    const s = this.#slot(src, 'copy');
    const d = this.#slot(dst, 'copy');
    if (!Number.isInteger(nTokens) || nTokens < 0 || nTokens > this.#lengths[s]!) {
      throw new RangeError(`kv.copy: nTokens ${nTokens} outside [0, ${this.#lengths[s]}] (slot ${src} holds ${this.#lengths[s]} positions)`);
    }
    kvCacheCopy(this.cache(), s, d, nTokens);
    this.#lengths[d] = nTokens;
  }

  length(seq: number): number {
    return this.#lengths[this.#slot(seq, 'length')]!;
  }

  /**
   * Checks a batch against the slots and returns the lengths they will have after it; throws a
   * RangeError naming the first bad token. Nothing changes until commit().
   */
  plan(b: ForwardBatch, vocab: number): Int32Array {
    const n = b.tokens.length;
    if (n === 0) throw new RangeError('forward: empty batch');
    if (b.positions.length !== n || b.seqIds.length !== n) {
      throw new RangeError(`forward: tokens (${n}), positions (${b.positions.length}) and seqIds (${b.seqIds.length}) must have the same length`);
    }
    const next = Int32Array.from(this.#lengths);
    for (let i = 0; i < n; i++) {
      const s = b.seqIds[i]!;
      if (s < 0 || s >= this.nSeq) throw new RangeError(`forward: token ${i} has seqId ${s}, outside [0, ${this.nSeq})`);
      const t = b.tokens[i]!;
      if (t < 0 || t >= vocab) throw new RangeError(`forward: token ${i} has id ${t}, outside the vocabulary [0, ${vocab})`);
      if (b.positions[i] !== next[s]) {
        throw new RangeError(
          `forward: token ${i} of sequence ${s} has position ${b.positions[i]}, expected ${next[s]} (the slot holds ${this.#lengths[s]} positions; truncate it first to rewrite)`,
        );
      }
      if (next[s]! >= this.ctxSize) throw new RangeError(`forward: sequence ${s} would exceed the context of ${this.ctxSize} tokens at token ${i}`);
      next[s]!++;
    }
    for (let j = 0; j < b.logitsFor.length; j++) {
      const r = b.logitsFor[j]!;
      if (!Number.isInteger(r) || r < 0 || r >= n) throw new RangeError(`forward: logitsFor[${j}] = ${r} outside the batch [0, ${n})`);
    }
    return next;
  }

  commit(lengths: Int32Array): void {
    this.#lengths.set(lengths);
  }
}
