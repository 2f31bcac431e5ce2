// Shared pieces of the kernel tests: seeded random data, weights quantized with the formats
// references, the ISA levels to run, and error bounds for comparing with float64 references.
import { GgmlType, GGML_TYPES } from '../../src/formats/ggml-types.ts';
import { quantize, dequantize } from '../../src/formats/quant.ts';
import { isaInfo, setIsa, setThreads, supportedIsas, type IsaLevel } from '../../src/native/isa.ts';
import { weightFromBytes, type NativeWeight } from '../../src/native/tensor.ts';

/** Deterministic PRNG (mulberry32) so a failing case reproduces. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Uniform values in [-scale, scale). */
export function randomF32(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = (r() * 2 - 1) * scale;
  return x;
}

export const WEIGHT_TYPES: GgmlType[] = [
  GgmlType.F32,
  GgmlType.F16,
  GgmlType.BF16,
  GgmlType.Q8_0,
  GgmlType.Q4_K,
  GgmlType.Q5_K,
  GgmlType.Q6_K,
];

export function typeName(t: GgmlType): string {
  return GGML_TYPES.get(t)!.name;
}

export function blockSize(t: GgmlType): number {
  return GGML_TYPES.get(t)!.blockSize;
}

/** A random weight of `type` with dims (ggml order) plus its exact F32 values (decoded by the TS reference). */
export function randomWeight(type: GgmlType, dims: number[], seed: number): { w: NativeWeight; values: Float32Array } {
  const n = dims.reduce((a, b) => a * b, 1);
  const bytes = quantize(type, randomF32(n, seed, 0.5));
  return { w: weightFromBytes(bytes, type, dims), values: dequantize(type, bytes, n) };
}

/** Activation error model of a weight type's kernel: quantized activations (Q8) or bf16 activations. */
export function actRelError(t: GgmlType): number {
  if (t === GgmlType.F32 || t === GgmlType.F16) return 1e-5;
  if (t === GgmlType.BF16) return 2 ** -8;
  return 1 / 127; // Q8_0 / Q8_K: |x - q| <= amax / 254, bound with amax / 127 for margin
}

/**
 * Bound on |kernel - exact| for one output: sum_i |w_i| * (act error of x_i) + float noise.
 * For Q8 activations the error of x_i is at most max|x| * actRelError; for bf16 it is |x_i| * 2^-8.
 */
export function dotBound(t: GgmlType, w: Float32Array, wOff: number, x: Float32Array, xOff: number, k: number): number {
  let amax = 0;
  let sAbsW = 0;
  let sAbsWX = 0;
  for (let i = 0; i < k; i++) amax = Math.max(amax, Math.abs(x[xOff + i]));
  for (let i = 0; i < k; i++) {
    sAbsW += Math.abs(w[wOff + i]);
    sAbsWX += Math.abs(w[wOff + i] * x[xOff + i]);
  }
  const quantized = t !== GgmlType.F32 && t !== GgmlType.F16 && t !== GgmlType.BF16;
  const act = quantized ? sAbsW * amax * actRelError(t) : sAbsWX * actRelError(t);
  return act + 1e-5 * sAbsWX + 1e-6;
}

/** Every ISA level this machine runs, lowest first, with the levels it cannot run listed for skips. */
export function isaCases(): { run: IsaLevel[]; missing: IsaLevel[]; detected: IsaLevel } {
  const run = supportedIsas();
  const all: IsaLevel[] = ['scalar', 'avx2', 'avx512', 'avx512vnni', 'avx512bf16', 'amx'];
  return { run, missing: all.filter((l) => !run.includes(l)), detected: isaInfo().detected };
}

/** Runs fn on a pool of n threads, then restores the previous size. */
export function withThreads<T>(n: number, fn: () => T): T {
  const before = isaInfo().threads;
  setThreads(n);
  try {
    return fn();
  } finally {
    setThreads(before);
  }
}

/** Runs fn with kernels forced to `level`, then restores the detected level. */
export function withIsa<T>(level: IsaLevel, fn: () => T): T {
  const prev = isaInfo().active;
  setIsa(level);
  try {
    return fn();
  } finally {
    setIsa(prev);
  }
}

/** Largest |a - b| / bound over all elements; > 1 means out of tolerance. Reports the worst index. */
export function worstRatio(a: Float32Array, b: Float32Array | Float64Array, bound: (i: number) => number): { ratio: number; at: number } {
  let ratio = 0;
  let at = -1;
  for (let i = 0; i < a.length; i++) {
    const r = Math.abs(a[i] - b[i]) / bound(i);
    if (!(r <= ratio)) {
      ratio = r;
      at = i;
    }
  }
  return { ratio, at };
}
