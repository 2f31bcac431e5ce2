// Typed wrapper of the native KV cache (native/src/kv-cache.h): storage only; which positions
// of a slot are valid is tracked in src/model/kv-slots.ts.
import { addon } from './addon.ts';

/** Opaque native handle. */
export type KvCacheHandle = { readonly __kvCache: unique symbol };

export const KV_TYPE_IDS = { f32: 0, f16: 1, bf16: 2 } as const;

export interface KvCacheShape {
  type: keyof typeof KV_TYPE_IDS;
  nSeq: number;
  nLayers: number;
  ctx: number;
  nKvHeads: number;
  headDim: number;
}

/** Allocates K and V [nSeq][nLayers][ctx][nKvHeads][headDim]; pages are committed on first write. */
export function kvCacheCreate(s: KvCacheShape): KvCacheHandle {
  return addon().kvCacheCreate!(KV_TYPE_IDS[s.type], s.nSeq, s.nLayers, s.ctx, s.nKvHeads, s.headDim) as KvCacheHandle;
}

/** Copies positions [0, nTokens) of every layer from slot src to slot dst. */
export function kvCacheCopy(kv: KvCacheHandle, src: number, dst: number, nTokens: number): void {
  addon().kvCacheCopy!(kv, src, dst, nTokens);
}

/** Writes K/V rows [n, nKvHeads * headDim] at (seq[i], layer, pos[i]) (kernel tests). */
export function kvCacheWrite(kv: KvCacheHandle, layer: number, n: number, seq: Int32Array, pos: Int32Array, k: Float32Array, v: Float32Array): void {
  addon().kvCacheWrite!(kv, layer, n, seq, pos, k, v);
}

export function kvCacheDispose(kv: KvCacheHandle): void {
  addon().kvCacheDispose!(kv);
}

/** dst[i] = fp32 -> fp16 (round to nearest even) of src[i], on the active ISA's path: the cache's f16 write (tests). */
export function f16RowRun(src: Float32Array, dst: Uint16Array): void {
  addon().f16RowRun!(src, dst);
}
