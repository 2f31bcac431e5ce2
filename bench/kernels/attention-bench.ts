// Attention core alone: one 512-token prefill chunk of a Qwen3-30B-A3B layer (32 heads, 4 KV
// heads, head dim 128) at cache depths 0 and 1536, each dispatch entry alternated per repetition
// (noisy shared boxes), median ms and GFLOP/s (2 * 2 * heads * dim per (token, visible position)),
// also per CPU-second of this process (less disturbed than wall time when the box is loaded).
//   node --import tsx bench/kernels/attention-bench.ts [reps=7] [kv=f16] [tokens=512] [depths=0,1536]
// Threads: MIXTILE_THREADS. Addon: MIXTILE_ADDON. Entries run by name, so flash-avx512bf16 shows
// over an F16 cache too, which the dispatch gives it only with MIXTILE_ATTENTION_BF16=1.
import { attentionKernelRun, attentionKernels } from '../../src/native/attention.ts';
import { kvCacheCreate, kvCacheDispose, kvCacheWrite, type KvCacheShape } from '../../src/native/kv-cache.ts';

const reps = Number(process.argv[2] ?? 7);
const kvType = (process.argv[3] ?? 'f16') as KvCacheShape['type'];
const n = Number(process.argv[4] ?? 512);
const depths = (process.argv[5] ?? '0,1536').split(',').map(Number);
const nHeads = 32, nKvHeads = 4, headDim = 128;
const ctx = Math.max(...depths) + n;
const kvDim = nKvHeads * headDim;

const kv = kvCacheCreate({ type: kvType, nSeq: 1, nLayers: 1, ctx, nKvHeads, headDim });
const K = new Float32Array(ctx * kvDim).map(() => Math.random() * 2 - 1);
const V = new Float32Array(ctx * kvDim).map(() => Math.random() * 2 - 1);
kvCacheWrite(kv, 0, ctx, new Int32Array(ctx), Int32Array.from({ length: ctx }, (_, i) => i), K, V);
const q = new Float32Array(n * nHeads * headDim).map(() => Math.random() * 2 - 1);
const out = new Float32Array(q.length);
const seq = new Int32Array(n);
const names = attentionKernels().filter((k) => k !== 'scalar');

for (const depth of depths) {
  const pos = Int32Array.from({ length: n }, (_, i) => depth + i);
  let visible = 0;
  for (const p of pos) visible += p + 1;
  const flop = 2 * 2 * nHeads * headDim * visible;
  const ms = new Map<string, number[]>(names.map((k) => [k, []]));
  const cpu = new Map<string, number[]>(names.map((k) => [k, []]));
  for (let r = 0; r < reps + 1; r++) {
    for (const name of names) {
      const c0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      const ran = attentionKernelRun(name, kv, 0, n, nHeads, q, out, pos, seq); // false: declines this KV type
      const dt = Number(process.hrtime.bigint() - t0) / 1e6;
      const c = process.cpuUsage(c0);
      if (ran && r > 0) {
        // the first round warms up
        ms.get(name)!.push(dt);
        cpu.get(name)!.push((c.user + c.system) / 1e3);
      }
    }
  }
  for (const [name, v] of ms) {
    if (v.length === 0) continue;
    v.sort((a, b) => a - b);
    const med = v[Math.floor(v.length / 2)]!;
    const c = cpu.get(name)!.sort((a, b) => a - b);
    const cmed = c[Math.floor(c.length / 2)]!;
    console.log(
      `kv ${kvType} tokens ${n} depth ${depth}: ${name.padEnd(13)} median ${med.toFixed(2)} ms (best ${v[0]!.toFixed(2)}), ` +
        `${(flop / med / 1e6).toFixed(1)} GFLOP/s; CPU ${cmed.toFixed(1)} ms, ${(flop / cmed / 1e6).toFixed(1)} GFLOP per CPU-s`,
    );
  }
}
kvCacheDispose(kv);
