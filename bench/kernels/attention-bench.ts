// Attention core alone: one 512-token prefill chunk of a Qwen3-30B-A3B layer (32 heads, 4 KV
// heads, head dim 128) at cache depths 0 and 1536, each dispatch entry alternated per repetition
// (noisy shared boxes), median ms and GFLOP/s (2 * 2 * heads * dim per (token, visible position)),
// also per CPU-second of this process (less disturbed than wall time when the box is loaded).
//   node --import tsx bench/kernels/attention-bench.ts [reps=7] [kv=f16] [tokens=512] [depths=0,1536]
// Threads: MIXTILE_THREADS. Addon: MIXTILE_ADDON. Entries run by name, so flash-avx512bf16 shows
// over an F16 cache too, which the dispatch gives it only with MIXTILE_ATTENTION_BF16=1.
import { attentionKernelRun, attentionKernels } from '../../src/native/attention.ts';
import { kvCacheDispose, type KvCacheShape } from '../../src/native/kv-cache.ts';
import { attentionSetup, chunkAt, nHeads } from './attention-setup.ts';

const reps = Number(process.argv[2] ?? 7);
const kvType = (process.argv[3] ?? 'f16') as KvCacheShape['type'];
const n = Number(process.argv[4] ?? 512);
const depths = (process.argv[5] ?? '0,1536').split(',').map(Number);

const { kv, q, out } = attentionSetup(kvType, Math.max(...depths) + n, n);
const seq = new Int32Array(n);
const names = attentionKernels().filter((k) => k !== 'scalar');

for (const depth of depths) {
  const { pos, flop } = chunkAt(depth, n);
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
