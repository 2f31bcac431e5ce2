// Shared by the attention benches (attention-bench.ts, attention-one.ts): one Qwen3-30B-A3B layer's attention
// shape (32 heads, 4 KV heads, head dim 128), a KV cache of `ctx` random positions, random queries for `n`
// tokens, and the FLOPs of a chunk at a depth (2 * 2 * heads * dim per (token, visible position)).
import { kvCacheCreate, kvCacheWrite, type KvCacheHandle, type KvCacheShape } from '../../src/native/kv-cache.ts';

export const nHeads = 32;
export const nKvHeads = 4;
export const headDim = 128;

export interface AttentionSetup {
  kv: KvCacheHandle;
  q: Float32Array;
  out: Float32Array;
}

export function attentionSetup(kvType: KvCacheShape['type'], ctx: number, n: number): AttentionSetup {
  const kvDim = nKvHeads * headDim;
  const kv = kvCacheCreate({ type: kvType, nSeq: 1, nLayers: 1, ctx, nKvHeads, headDim });
  const K = new Float32Array(ctx * kvDim).map(() => Math.random() * 2 - 1);
  const V = new Float32Array(ctx * kvDim).map(() => Math.random() * 2 - 1);
  kvCacheWrite(kv, 0, ctx, new Int32Array(ctx), Int32Array.from({ length: ctx }, (_, i) => i), K, V);
  const q = new Float32Array(n * nHeads * headDim).map(() => Math.random() * 2 - 1);
  return { kv, q, out: new Float32Array(q.length) };
}

/** Positions depth .. depth + n - 1, and the chunk's FLOPs over the causal window. */
export function chunkAt(depth: number, n: number): { pos: Int32Array; flop: number } {
  const pos = Int32Array.from({ length: n }, (_, i) => depth + i);
  let visible = 0;
  for (const p of pos) visible += p + 1;
  return { pos, flop: 2 * 2 * nHeads * headDim * visible };
}
