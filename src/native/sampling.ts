// Typed wrapper of the native logits scans (native/src/cpu/sampling/): argmax, top-k ids, ids
// within a gap of the max. Each gives exactly what its JS reference in src/engine/sampler.ts
// gives; undefined means "not decided natively" (a NaN in the row, or an addon without them).
import { addon } from './addon.ts';

let available: boolean | undefined;

/** True when the loaded addon has the scans (an older MIXTILE_ADDON build may not). */
export function nativeSamplingAvailable(): boolean {
  if (available === undefined) {
    try {
      available = typeof addon().logitsArgmax === 'function';
    } catch {
      available = false;
    }
  }
  return available;
}

/** Index of the largest logit, lowest on ties. */
export function nativeArgmax(logits: Float32Array): number | undefined {
  const id = addon().logitsArgmax!(logits) as number;
  return id < 0 ? undefined : id;
}

/** The k best ids, by logit descending then id ascending. */
export function nativeTopK(logits: Float32Array, k: number): Int32Array | undefined {
  return (addon().logitsTopK!(logits, k) as Int32Array | null) ?? undefined;
}

/** Ids with logit >= max - gap: sorted best first (then id), or the argmax first and the rest in id order. */
export function nativeAboveGap(logits: Float32Array, gap: number, sorted: boolean): Int32Array | undefined {
  return (addon().logitsAboveGap!(logits, gap, sorted) as Int32Array | null) ?? undefined;
}
