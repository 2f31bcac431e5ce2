// Typed wrapper of the native embedding lookup (native/src/cpu/embed/).
import { addon } from './addon.ts';
import type { WeightHandle } from './attention.ts';

/** out [n, hidden] = dequantized rows ids[0..n) of table [vocab, hidden]; throws on an id outside the vocabulary. */
export function embedRows(table: WeightHandle, ids: Int32Array, n: number, out: Float32Array): void {
  addon().embedRows!(table, ids, n, out);
}
