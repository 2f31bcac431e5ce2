// One attention entry over one prefill chunk (or a decode token) of a Qwen3-30B-A3B layer (32 heads,
// 4 KV heads, head dim 128) at one cache depth, for A/B runs across addons (MIXTILE_ADDON) that a
// shell loop alternates; attention-bench.ts alternates the entries of one addon instead. Prints the
// median of `reps` calls after a first that warms up: GFLOP per CPU-second of this process, i.e. per
// core, which the load of a shared box disturbs less than wall time, and wall microseconds.
//   node --import tsx bench/kernels/attention-one.ts <entry> [kv=f16] [depth=1536] [reps=3] [tokens=512]
// Entries run by name (attentionKernels()), so flash-avx512bf16 takes an F16 cache here.
import { attentionKernelRun } from '../../src/native/attention.ts';
import { kvCacheDispose, type KvCacheShape } from '../../src/native/kv-cache.ts';
import { attentionSetup, chunkAt, nHeads } from './attention-setup.ts';

const name = process.argv[2];
if (!name) throw new Error('usage: attention-one.ts <entry> [kv] [depth] [reps] [tokens]');
const kvType = (process.argv[3] ?? 'f16') as KvCacheShape['type'];
const depth = Number(process.argv[4] ?? 1536);
const reps = Number(process.argv[5] ?? 3);
const n = Number(process.argv[6] ?? 512);

const { kv, q, out } = attentionSetup(kvType, depth + n, n);
const { pos, flop } = chunkAt(depth, n);
const cpuMs: number[] = [];
const wallUs: number[] = [];
for (let r = 0; r <= reps; r++) {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  if (!attentionKernelRun(name, kv, 0, n, nHeads, q, out, pos, new Int32Array(n))) throw new Error(`${name} declines this call`);
  const wall = Number(process.hrtime.bigint() - t0) / 1e3;
  const c = process.cpuUsage(c0);
  if (r > 0) cpuMs.push((c.user + c.system) / 1e3), wallUs.push(wall);
}
const median = (v: number[]): number => v.sort((a, b) => a - b)[v.length >> 1]!;
console.log(
  `${name} kv ${kvType} tokens ${n} depth ${depth}: ${(flop / median(cpuMs) / 1e6).toFixed(1)} GFLOP per CPU-s, ` +
    `${median(wallUs).toFixed(0)} us`,
);
kvCacheDispose(kv);
