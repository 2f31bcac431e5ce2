// The routed-experts op at 512 tokens (Qwen3-30B-A3B shapes: 128 experts, hidden 2048, ffn 768,
// top-8, distinct random experts per token) through the addon as the engine calls it: AMX-INT8
// with scale group 64 and 32 (MIXTILE_AMX_INT8_GROUP at load) and g64 with BF16 down panels
// (MIXTILE_AMX_INT8_DOWN=bf16) from a Q4_K source, and AMX-BF16
// from a BF16 source, as the 512-token row of threshold-sweep.ts. The variants are timed in
// alternation, rounds x reps calls each, and the median of each is printed with TFLOP/s.
//   node --import tsx bench/amx/int8-group-bench.ts [rounds=3] [reps=5] [tokens=512] [threads=16]
import { GgmlType } from '../../src/formats/ggml-types.ts';
import { randomRouting } from '../../src/engine/bench-op.ts';
import { addon } from '../../src/native/addon.ts';
import { expertsLoad, moeForwardRouted, type ExpertsHandle } from '../../src/native/experts.ts';
import { isaInfo, setThreads } from '../../src/native/isa.ts';
import { NativeWeight, type NativeHandle } from '../../src/native/tensor.ts';

const [roundsArg, repsArg, tokensArg, threadsArg] = process.argv.slice(2);
const rounds = Number(roundsArg ?? 3);
const reps = Number(repsArg ?? 5);
const N = Number(tokensArg ?? 512);
const HIDDEN = 2048;
const FFN = 768;
const N_EXPERT = 128;
const TOP_K = 8;

const synth = (type: GgmlType, dims: number[], seed: number) =>
  new NativeWeight(addon().weightSynth(type, dims, seed) as NativeHandle, type, dims);

function load(type: GgmlType, group: string | undefined, down = 'int8'): ExpertsHandle {
  if (group) process.env.MIXTILE_AMX_INT8_GROUP = group;
  else delete process.env.MIXTILE_AMX_INT8_GROUP;
  process.env.MIXTILE_AMX_INT8_DOWN = down;
  const w = [synth(type, [HIDDEN, FFN, N_EXPERT], 1), synth(type, [HIDDEN, FFN, N_EXPERT], 2), synth(type, [FFN, HIDDEN, N_EXPERT], 3)];
  const router = synth(GgmlType.F32, [HIDDEN, N_EXPERT], 4);
  const ex = expertsLoad({ gate: w[0]!, up: w[1]!, down: w[2]!, router });
  for (const x of [...w, router]) x.dispose();
  return ex;
}

/** Distinct random experts per token. */
const routing = (seed: number) => randomRouting(N, N_EXPERT, TOP_K, seed);

const threads = Number(threadsArg ?? 16);
setThreads(threads);
const variants = [
  { name: 'AMX-INT8 g64 (Q4_K source)', ex: load(GgmlType.Q4_K, '64') },
  { name: 'AMX-INT8 g32 (Q4_K source)', ex: load(GgmlType.Q4_K, '32') },
  { name: 'AMX-INT8 g64, BF16 down (Q4_K source)', ex: load(GgmlType.Q4_K, '64', 'bf16') },
  { name: 'AMX-BF16 (BF16 source)', ex: load(GgmlType.BF16, undefined) },
];
delete process.env.MIXTILE_AMX_INT8_GROUP;
delete process.env.MIXTILE_AMX_INT8_DOWN;
const x = new Float32Array(N * HIDDEN).map((_, i) => Math.sin(i * 0.37));
const y = new Float32Array(N * HIDDEN);
const routes = Array.from({ length: reps + 1 }, (_, r) => routing(1000 + r));
const ms = variants.map(() => [] as number[]);
for (let round = 0; round < rounds; round++) {
  variants.forEach((v, i) => {
    for (let r = -1; r < reps; r++) {
      const rt = routes[r + 1]!;
      const t0 = performance.now();
      moeForwardRouted(v.ex, x, N, rt.ids, rt.weights, TOP_K, y);
      if (r >= 0) ms[i]!.push(performance.now() - t0);
    }
  });
}
const flops = 2 * N * TOP_K * 3 * HIDDEN * FFN;
console.log(`# ${isaInfo().cpu}, ${isaInfo().active}, ${threads} threads, ${N} tokens top-${TOP_K} of ${N_EXPERT}, ${rounds} rounds x ${reps} calls`);
console.log('| experts | kernel | median ms | min ms | TFLOP/s |');
console.log('|---|---|---|---|---|');
variants.forEach((v, i) => {
  const s = [...ms[i]!].sort((a, b) => a - b);
  const med = s[Math.floor(s.length / 2)]!;
  console.log(`| ${v.name} | ${v.ex.kernelName(N, TOP_K)} | ${med.toFixed(3)} | ${s[0]!.toFixed(3)} | ${(flops / med / 1e9).toFixed(2)} |`);
  v.ex.dispose();
});
