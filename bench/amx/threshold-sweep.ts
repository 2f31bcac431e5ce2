// AMX/AVX-512 switch points from data (issue 8 item 2), through the addon as the engine calls it:
// the routed-experts op (Qwen3-30B-A3B shapes: 128 experts, hidden 2048, ffn 768, top-8) and a
// linear layer (q_proj, 2048 -> 4096) at 1..512 tokens per call, on the AMX entry / AMX panels
// and on the generic AVX-512 kernels over the source weights; experts decode (1 token) also at
// 1/4/8/16 threads. Weights are made once per type and reused for every path and thread count.
// Prints markdown rows and the threshold each table implies (first token count from which AMX
// stays faster). Needs an AMX CPU for the AMX rows.
//   MIXTILE_AMX_MIN_CALL_TOKENS=1 MIXTILE_AMX_LINEAR_MIN_TOKENS=1 node --import tsx bench/amx/threshold-sweep.ts [types=q4_k,bf16] [reps=5]
import { GgmlType, ggmlRowBytes } from '../../src/formats/ggml-types.ts';
import { randomRouting } from '../../src/engine/bench-op.ts';
import { addon } from '../../src/native/addon.ts';
import { expertsLoad, moeForwardRouted } from '../../src/native/experts.ts';
import { isaInfo, setIsa, setThreads, type IsaLevel } from '../../src/native/isa.ts';
import { linearForward, linearLoad, type LinearBackend } from '../../src/native/linear.ts';
import { NativeWeight, type NativeHandle } from '../../src/native/tensor.ts';

const [typesArg, repsArg] = process.argv.slice(2);
const TYPES: Record<string, GgmlType> = { q4_k: GgmlType.Q4_K, bf16: GgmlType.BF16, q8_0: GgmlType.Q8_0, q6_k: GgmlType.Q6_K };
const types = (typesArg ?? 'q4_k,bf16').split(',');
const reps = Number(repsArg ?? 5);
const HIDDEN = 2048;
const FFN = 768;
const N_EXPERT = 128;
const TOP_K = 8;
const Q_OUT = 4096;
const TOKENS = [1, 2, 4, 8, 16, 24, 32, 48, 64, 128, 256, 512];
const THREADS = [1, 4, 8, 16];

if (process.env.MIXTILE_AMX_MIN_CALL_TOKENS !== '1' || process.env.MIXTILE_AMX_LINEAR_MIN_TOKENS !== '1') {
  throw new Error('set MIXTILE_AMX_MIN_CALL_TOKENS=1 MIXTILE_AMX_LINEAR_MIN_TOKENS=1 so the AMX paths take every call');
}
const info = isaInfo();
const detected = info.detected as IsaLevel;
console.log(`# ${info.cpu}, detected ${detected}, ${info.threads} threads, reps ${reps} (median)`);
if (detected !== 'amx') console.log('# no AMX here: only the AVX-512 rows mean anything');

function synth(type: GgmlType, dims: number[], seed: number): NativeWeight {
  return new NativeWeight(addon().weightSynth(type, dims, seed) as NativeHandle, type, dims);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Distinct random experts per token, fresh per rep (as decode touches new experts). */
const routing = (n: number, seed: number) => randomRouting(n, N_EXPERT, TOP_K, seed);

function time(fn: (rep: number) => void): number {
  const ms: number[] = [];
  for (let r = -1; r < reps; r++) {
    const t0 = performance.now();
    fn(r);
    if (r >= 0) ms.push(performance.now() - t0);
  }
  return median(ms);
}

/** First token count from which `a` is faster than `b` at every larger count measured. */
function threshold(ns: number[], a: number[], b: number[]): string {
  let from = -1;
  for (let i = ns.length - 1; i >= 0; i--) {
    if (a[i]! < b[i]!) from = ns[i]!;
    else break;
  }
  return from < 0 ? 'never in range' : String(from);
}

for (const name of types) {
  const type = TYPES[name];
  if (type === undefined) throw new Error(`unknown type ${name} (known: ${Object.keys(TYPES).join(', ')})`);
  // ---- experts ----
  setIsa(detected);
  setThreads(16);
  const gate = synth(type, [HIDDEN, FFN, N_EXPERT], 1);
  const up = synth(type, [HIDDEN, FFN, N_EXPERT], 2);
  const down = synth(type, [FFN, HIDDEN, N_EXPERT], 3);
  const router = synth(GgmlType.F32, [HIDDEN, N_EXPERT], 4);
  let t0 = performance.now();
  const ex = expertsLoad({ gate, up, down, router });
  const loadMs = performance.now() - t0;
  for (const w of [gate, up, down, router]) w.dispose();
  const expertBytes = 3 * ggmlRowBytes(type, HIDDEN) * FFN;
  const amxName = ex.kernelName(512, TOP_K);
  console.log(`\n## experts ${name}: load (repack to ${amxName}) ${loadMs.toFixed(0)} ms`);
  console.log('| threads | tokens | AMX entry ms | generic AVX-512 ms | generic/AMX | AMX GFLOP/s | generic src GB/s |');
  console.log('|---|---|---|---|---|---|---|');
  for (const threads of [...THREADS].reverse()) {
    setThreads(threads);
    const ns = threads === 16 ? TOKENS : [1];
    const amxMs: number[] = [];
    const avxMs: number[] = [];
    for (const n of ns) {
      const x = new Float32Array(n * HIDDEN).map((_, i) => Math.sin(i * 0.37));
      const y = new Float32Array(n * HIDDEN);
      const routes = Array.from({ length: reps + 1 }, (_, r) => routing(n, 1000 + r));
      const run = (r: number) => moeForwardRouted(ex, x, n, routes[r + 1]!.ids, routes[r + 1]!.weights, TOP_K, y);
      setIsa(detected);
      const a = detected === 'amx' ? time(run) : Number.NaN;
      setIsa('avx512bf16');
      const g = time(run);
      setIsa(detected);
      amxMs.push(a);
      avxMs.push(g);
      const touched = new Set(routes[1]!.ids).size;
      const flops = 2 * 3 * n * TOP_K * HIDDEN * FFN;
      console.log(
        `| ${threads} | ${n} | ${a.toFixed(3)} | ${g.toFixed(3)} | ${(g / a).toFixed(2)} | ${(flops / a / 1e6).toFixed(0)} | ${((touched * expertBytes) / g / 1e6).toFixed(1)} |`,
      );
    }
    if (threads === 16) console.log(`experts ${name} threshold (tokens per call, 16 threads): AMX from ${threshold(ns, amxMs, avxMs)}`);
  }
  ex.dispose();

  // ---- linear (q_proj shape) ----
  setThreads(16);
  setIsa(detected);
  const w = synth(type, [HIDDEN, Q_OUT], 5);
  const paths: [string, LinearBackend][] = [
    ['AMXBF16', 'AMXBF16'],
    ['AMXInt8', 'AMXInt8'],
    ['AVX-512', 'AVX512'],
  ];
  const handles = paths.map(([label, backend]) => {
    t0 = performance.now();
    const h = linearLoad(w, backend);
    return { label, h, loadMs: performance.now() - t0 };
  });
  w.dispose();
  console.log(`\n## linear ${name} ${HIDDEN} -> ${Q_OUT}, 16 threads; load ms: ${handles.map((p) => `${p.label} ${p.loadMs.toFixed(0)}`).join(', ')}`);
  console.log(`| tokens | ${handles.map((p) => `${p.label} ms`).join(' | ')} | AMXBF16 TFLOP/s | kernels |`);
  console.log(`|---|${handles.map(() => '---').join('|')}|---|---|`);
  const cols: number[][] = handles.map(() => []);
  for (const n of TOKENS) {
    const x = new Float32Array(n * HIDDEN).map((_, i) => Math.cos(i * 0.11));
    const y = new Float32Array(n * Q_OUT);
    const ms = handles.map((p) => time(() => linearForward(p.h, x, n, y)));
    ms.forEach((m, i) => cols[i]!.push(m));
    console.log(
      `| ${n} | ${ms.map((m) => m.toFixed(3)).join(' | ')} | ${((2 * n * HIDDEN * Q_OUT) / ms[0]! / 1e9).toFixed(2)} | ${handles.map((p) => p.h.kernelName(n)).join(', ')} |`,
    );
  }
  console.log(`linear ${name} threshold (tokens per call): AMXBF16 from ${threshold(TOKENS, cols[0]!, cols[2]!)}, AMXInt8 from ${threshold(TOKENS, cols[1]!, cols[2]!)}`);
  for (const p of handles) p.h.dispose();
}
