// Operator micro-benchmark (`mixtile bench --op`, or run this file directly): times the native
// experts / linear kernels on Qwen3-30B-A3B layer shapes with synthetic weights and reports
// GB/s, GFLOP/s and, for decode, the share of the DRAM floor measured in the same run. With
// `devices` (--device cpu,gpu,split) the experts run through the GPU experts path instead: CPU kernel,
// every expert streamed to the GPU, or the cost model's split, per token count (the crossover).
//   npx tsx src/engine/bench-op.ts --op experts --type q4_k --tokens 1,512
//   npx tsx src/engine/bench-op.ts --op experts --type q4_k --down-type q6_k --device cpu,gpu,split --tokens 1,8,32,128,512,2048
import { parseArgs } from 'node:util';
import { GgmlType, ggmlRowBytes } from '../formats/ggml-types.ts';
import { addon } from '../native/addon.ts';
import { expertsLoad, moeForwardRouted, type ExpertsHandle } from '../native/experts.ts';
import { gpuExpertsCost, gpuExpertsForward, gpuExpertsRelease, type ExpertsPlacement, type GpuExpertsResult } from '../native/gpu-experts.ts';
import { isaInfo, setIsa, setThreads, type IsaLevel } from '../native/isa.ts';
import { linearForward, linearLoad } from '../native/linear.ts';
import { NativeWeight, type NativeHandle } from '../native/tensor.ts';

export type BenchOpName = 'experts' | 'linear';

export interface BenchOpOptions {
  /** Weight type name: f32 f16 bf16 q8_0 q4_k q5_k q6_k. */
  type: string;
  /** Type of ffn_down when different (Q4_K_M uses q6_k in half the layers). */
  downType?: string;
  tokens: number[];
  threads?: number;
  reps?: number;
  isa?: IsaLevel;
  /** Shapes; defaults are Qwen3-30B-A3B's. */
  hidden?: number;
  ffn?: number;
  nExpert?: number;
  topK?: number;
  /** linear: output features (default 4096, the q projection). */
  outFeatures?: number;
  /** MiB for the DRAM probe (default 1024; 0 skips it). */
  probeMiB?: number;
  /** experts: run through the GPU experts path with these placements (needs a CUDA library and device). */
  devices?: ExpertsPlacement[];
}

export interface BenchOpRow {
  op: BenchOpName;
  type: string;
  tokens: number;
  kernel: string;
  threads: number;
  /** Median milliseconds per call (wall clock). */
  ms: number;
  /** Median process CPU milliseconds per call divided by threads: on a shared, oversubscribed box
   * this is closer to the kernel's own speed than wall time (idle-spinning workers count too). */
  cpuMs: number;
  /** Weight bytes the call must read (experts: only the selected experts) / time. */
  weightGBps: number;
  gflops: number;
  /** DRAM floor for the weight bytes (ms) and this call's time as a multiple of it. */
  floorMs?: number;
  xFloor?: number;
  /** --device rows: where the experts ran, how many on the GPU / CPU, the cost model's prediction (ms). */
  placement?: ExpertsPlacement;
  gpuExperts?: number;
  cpuExperts?: number;
  predictedMs?: number;
}

const TYPES: Record<string, GgmlType> = {
  f32: GgmlType.F32,
  f16: GgmlType.F16,
  bf16: GgmlType.BF16,
  q8_0: GgmlType.Q8_0,
  q4_k: GgmlType.Q4_K,
  q5_k: GgmlType.Q5_K,
  q6_k: GgmlType.Q6_K,
};

function parseType(name: string): GgmlType {
  const t = TYPES[name.toLowerCase()];
  if (t === undefined) throw new Error(`unknown weight type "${name}" (known: ${Object.keys(TYPES).join(', ')})`);
  return t;
}

function synth(type: GgmlType, dims: number[], seed: number): NativeWeight {
  return new NativeWeight(addon().weightSynth(type, dims, seed) as NativeHandle, type, dims);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Distinct random experts per token: each call touches fresh experts, as decode does. */
export function randomRouting(n: number, nExpert: number, topK: number, seed: number): { ids: Int32Array; weights: Float32Array } {
  let s = seed >>> 0;
  const next = (): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s;
  };
  const ids = new Int32Array(n * topK);
  const weights = new Float32Array(n * topK).fill(1 / topK);
  for (let t = 0; t < n; t++) {
    const used = new Set<number>();
    for (let j = 0; j < topK; j++) {
      let e = next() % nExpert;
      while (used.has(e)) e = (e + 1) % nExpert;
      used.add(e);
      ids[t * topK + j] = e;
    }
  }
  return { ids, weights };
}

interface PlacementShape {
  hidden: number;
  ffn: number;
  nExpert: number;
  topK: number;
  reps: number;
  expertBytes: number;
  threads: number;
}

/** One layer's experts per token count on the CPU, the GPU (weights streamed) and split: the crossover. */
function benchPlacements(ex: ExpertsHandle, type: string, devices: ExpertsPlacement[], tokens: number[], s: PlacementShape): BenchOpRow[] {
  const c = gpuExpertsCost(ex);
  console.log(
    `# cost model (${c.source}): PCIe ${c.pcieGbps.toFixed(1)} GB/s, expert ${(c.expertBytes / 1e6).toFixed(2)} MB; ` +
      `GPU ${c.gpuBaseUs.toFixed(1)} us/expert + ${c.gpuRowUs.toFixed(3)} us/token, call ${c.gpuCallUs.toFixed(0)} us; ` +
      `CPU ${c.cpuBaseUs.toFixed(1)} us/expert + ${c.cpuRowUs.toFixed(3)} us/token\n# MIXTILE_EXPERT_COST=${c.env}`,
  );
  const rows: BenchOpRow[] = [];
  for (const n of tokens) {
    const x = new Float32Array(n * s.hidden).map((_, i) => Math.sin(i * 0.37));
    const y = new Float32Array(n * s.hidden);
    for (const placement of devices) {
      const times: number[] = [];
      let last: GpuExpertsResult | undefined;
      let touched = 0;
      for (let r = -1; r < s.reps; r++) {  // r = -1: warm-up (scratch, cuBLAS heuristics)
        const { ids, weights } = randomRouting(n, s.nExpert, s.topK, 1000 + r);
        last = gpuExpertsForward(ex, x, n, ids, weights, s.topK, placement, y);
        if (r >= 0) times.push(last.ms);
        touched = new Set(ids).size;
      }
      if (!last) continue;
      if (placement === 'split') {
        const k = gpuExpertsCost(ex);
        console.log(`# n=${n}: split correction so far (measured/predicted): CPU x${k.cpuScale.toFixed(2)}, GPU x${k.gpuScale.toFixed(2)}`);
      }
      const ms = median(times);
      rows.push({
        op: 'experts',
        type,
        tokens: n,
        kernel: `${placement} ${last.gpuExperts}g/${last.cpuExperts}c`,
        threads: s.threads,
        ms,
        cpuMs: last.cpuMs,
        weightGBps: (touched * s.expertBytes) / (ms * 1e6),
        gflops: (2 * 3 * n * s.topK * s.hidden * s.ffn) / (ms * 1e6),
        placement,
        gpuExperts: last.gpuExperts,
        cpuExperts: last.cpuExperts,
        predictedMs: Math.max(last.predictedCpuMs, last.predictedGpuMs),
      });
    }
  }
  return rows;
}

/** Runs the benchmark and returns one row per token count (it also prints them). */
export function benchOp(op: BenchOpName, opts: BenchOpOptions): BenchOpRow[] {
  if (opts.threads) setThreads(opts.threads);
  if (opts.isa) setIsa(opts.isa);
  const info = isaInfo();
  const hidden = opts.hidden ?? 2048;
  const ffn = opts.ffn ?? 768;
  const nExpert = opts.nExpert ?? 128;
  const topK = opts.topK ?? 8;
  const reps = opts.reps ?? 5;
  const type = parseType(opts.type);
  const downType = parseType(opts.downType ?? opts.type);
  const probeMiB = opts.probeMiB ?? 1024;
  const dramGBps = probeMiB > 0 ? (addon().memReadBandwidth(probeMiB, 3) as number) : 0;
  console.log(
    `# ${info.cpu}, isa ${info.active} (detected ${info.detected}), ${info.threads} threads` +
      (dramGBps ? `, DRAM read ${dramGBps.toFixed(1)} GB/s (${probeMiB} MiB page-unique, best of 3)` : ''),
  );
  const rows: BenchOpRow[] = [];
  if (op === 'experts') {
    const gate = synth(type, [hidden, ffn, nExpert], 1);
    const up = synth(type, [hidden, ffn, nExpert], 2);
    const down = synth(downType, [ffn, hidden, nExpert], 3);
    const router = synth(GgmlType.F32, [hidden, nExpert], 4);
    const ex = expertsLoad({ gate, up, down, router });
    for (const w of [gate, up, down, router]) w.dispose();
    const expertBytes = 2 * ggmlRowBytes(type, hidden) * ffn + ggmlRowBytes(downType, ffn) * hidden;
    if (opts.devices) {
      const label = downType === type ? opts.type : `${opts.type}/${opts.downType}`;
      rows.push(...benchPlacements(ex, label, opts.devices, opts.tokens, { hidden, ffn, nExpert, topK, reps, expertBytes, threads: info.threads }));
      gpuExpertsRelease(ex);
    }
    for (const n of opts.devices ? [] : opts.tokens) {
      const x = new Float32Array(n * hidden).map((_, i) => Math.sin(i * 0.37));
      const y = new Float32Array(n * hidden);
      const times: number[] = [];
      const cpu: number[] = [];
      let touched = 0;
      for (let r = -1; r < reps; r++) {
        const { ids, weights } = randomRouting(n, nExpert, topK, 1000 + r);
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        moeForwardRouted(ex, x, n, ids, weights, topK, y);
        const ms = performance.now() - t0;
        const c = process.cpuUsage(c0);
        if (r >= 0) {
          times.push(ms);
          cpu.push((c.user + c.system) / 1e3 / info.threads);
        }
        touched = new Set(ids).size;
      }
      const ms = median(times);
      const cpuMs = median(cpu);
      const bytes = touched * expertBytes;
      const flops = 2 * 3 * n * topK * hidden * ffn;
      const floorMs = dramGBps ? (bytes / (dramGBps * 1e9)) * 1e3 : undefined;
      rows.push({
        op,
        type: downType === type ? opts.type : `${opts.type}/${opts.downType}`,
        tokens: n,
        kernel: ex.kernelName(n, topK),
        threads: info.threads,
        ms,
        cpuMs,
        weightGBps: bytes / (ms * 1e6),
        gflops: flops / (ms * 1e6),
        floorMs,
        xFloor: floorMs ? ms / floorMs : undefined,
      });
    }
    ex.dispose();
  } else {
    const m = opts.outFeatures ?? 4096;
    const w = synth(type, [hidden, m], 5);
    const lin = linearLoad(w);
    w.dispose();
    const bytes = ggmlRowBytes(type, hidden) * m;
    for (const n of opts.tokens) {
      const x = new Float32Array(n * hidden).map((_, i) => Math.sin(i * 0.37));
      const y = new Float32Array(n * m);
      const times: number[] = [];
      const cpu: number[] = [];
      for (let r = -1; r < reps; r++) {
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        linearForward(lin, x, n, y);
        const ms = performance.now() - t0;
        const c = process.cpuUsage(c0);
        if (r >= 0) {
          times.push(ms);
          cpu.push((c.user + c.system) / 1e3 / info.threads);
        }
      }
      const ms = median(times);
      const cpuMs = median(cpu);
      const floorMs = dramGBps ? (bytes / (dramGBps * 1e9)) * 1e3 : undefined;
      rows.push({
        op,
        type: opts.type,
        tokens: n,
        kernel: lin.kernelName(n),
        threads: info.threads,
        ms,
        cpuMs,
        weightGBps: bytes / (ms * 1e6),
        gflops: (2 * n * hidden * m) / (ms * 1e6),
        floorMs,
        xFloor: floorMs ? ms / floorMs : undefined,
      });
    }
    lin.dispose();
  }
  for (const r of rows) {
    console.log(
      `${r.op.padEnd(8)} ${r.type.padEnd(10)} n=${String(r.tokens).padEnd(5)} ${r.kernel.padEnd(18)} ` +
        `${r.ms.toFixed(3).padStart(9)} ms  ${r.weightGBps.toFixed(1).padStart(7)} GB/s  ${r.gflops.toFixed(1).padStart(7)} GFLOP/s` +
        (r.floorMs !== undefined ? `  floor ${r.floorMs.toFixed(3)} ms (${r.xFloor!.toFixed(2)}x)` : '') +
        (r.placement
          ? `  | predicted ${r.predictedMs!.toFixed(3)} ms, CPU part ${r.cpuMs.toFixed(3)} ms`
          : `  | cpu ${r.cpuMs.toFixed(3)} ms/thread, ${(r.gflops * (r.ms / r.cpuMs)).toFixed(1)} GFLOP/s per cpu-time`),
    );
  }
  return rows;
}

/** "cpu,gpu,split" -> placements; throws naming the choices. */
export function parseDevices(list: string): ExpertsPlacement[] {
  const out = list.split(',').map((d) => d.trim());
  for (const d of out) if (d !== 'cpu' && d !== 'gpu' && d !== 'split') throw new Error(`--device: "${d}" is not cpu, gpu or split`);
  return out as ExpertsPlacement[];
}

function main(): void {
  const { values } = parseArgs({
    options: {
      op: { type: 'string', default: 'experts' },
      type: { type: 'string', default: 'q4_k' },
      'down-type': { type: 'string' },
      tokens: { type: 'string', default: '1,512' },
      threads: { type: 'string' },
      reps: { type: 'string', default: '5' },
      isa: { type: 'string' },
      'probe-mib': { type: 'string', default: '1024' },
      out: { type: 'string', default: '4096' },
      hidden: { type: 'string', default: '2048' },
      ffn: { type: 'string', default: '768' },
      device: { type: 'string' },
    },
  });
  if (values.op !== 'experts' && values.op !== 'linear') throw new Error(`--op must be experts or linear, got ${values.op}`);
  benchOp(values.op, {
    type: values.type!,
    downType: values['down-type'],
    tokens: values.tokens!.split(',').map(Number),
    threads: values.threads ? Number(values.threads) : undefined,
    reps: Number(values.reps),
    isa: values.isa as IsaLevel | undefined,
    probeMiB: Number(values['probe-mib']),
    outFeatures: Number(values.out),
    hidden: Number(values.hidden),
    ffn: Number(values.ffn),
    devices: values.device ? parseDevices(values.device) : undefined,
  });
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) main();
