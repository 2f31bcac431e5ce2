// AMX linear layers (native/src/cpu/amx/linear-forward-amx.cc through cpu/linear's AMX hook):
// AMX-BF16 and AMX-INT8 panels against a float64 reference over the TS-decoded weights, at
// awkward sizes (1/3/17/130 tokens, K and N off the tile sizes), and the dispatch: which calls
// take the panels. Skips where AMX is absent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GgmlType } from '../../src/formats/ggml-types.ts';
import { addon } from '../../src/native/addon.ts';
import { isaInfo } from '../../src/native/isa.ts';
import { linearForward, linearLoad } from '../../src/native/linear.ts';
import { randomF32, randomWeight, typeName } from './helpers.ts';

interface AmxInfo {
  available: boolean;
  reason: string;
  flags: string;
  linearMinTokens: number;
}
const info = addon().amxInfo() as AmxInfo;
const skip = info.available ? false : info.reason || `no AMX on this CPU (flags: ${info.flags})`;

// Error bounds as in amx.test.ts: per output as a fraction of the reference row's RMS, and the
// whole-tensor relative L2 error. BF16 rounds x and W (2^-9 each); INT8 quantizes both per 64.
const TOL = { bf16: 0.05, int8: 0.12 } as const;
const REL_L2 = { bf16: 6e-3, int8: 3e-2 } as const;

// [type, k, m]: k a whole number of blocks and off the 32/64 K steps where the block allows; m
// off the 32-column panels.
const SHAPES: [GgmlType, number, number][] = [
  [GgmlType.BF16, 200, 72],
  [GgmlType.F16, 136, 33],
  [GgmlType.Q8_0, 160, 40],
  [GgmlType.Q4_K, 512, 100],
  [GgmlType.Q6_K, 256, 65],
];
const TOKENS = [1, 3, 17, 130];

function reference(w: Float32Array, k: number, m: number, x: Float32Array, n: number): Float64Array {
  const y = new Float64Array(n * m);
  for (let t = 0; t < n; t++)
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let i = 0; i < k; i++) s += x[t * k + i]! * w[j * k + i]!;
      y[t * m + j] = s;
    }
  return y;
}

function check(y: Float32Array, ref: Float64Array, n: number, m: number, tol: number, relL2: number, what: string): void {
  let e2 = 0;
  let r2 = 0;
  for (let t = 0; t < n; t++) {
    let rowR2 = 0;
    for (let j = 0; j < m; j++) rowR2 += ref[t * m + j]! ** 2;
    const rms = Math.sqrt(rowR2 / m);
    for (let j = 0; j < m; j++) {
      const d = Math.abs(y[t * m + j]! - ref[t * m + j]!);
      assert.ok(Number.isFinite(y[t * m + j]!), `${what}: y[${t}][${j}] is ${y[t * m + j]}`);
      assert.ok(d <= tol * rms + 1e-6, `${what}: y[${t}][${j}] = ${y[t * m + j]} vs ${ref[t * m + j]} (row rms ${rms})`);
      e2 += d * d;
    }
    r2 += rowR2;
  }
  assert.ok(Math.sqrt(e2 / r2) <= relL2, `${what}: relative L2 error ${Math.sqrt(e2 / r2)} > ${relL2}`);
}

test('AMX linear panels vs a float64 reference at awkward sizes (BF16 and INT8)', { skip }, () => {
  for (const [type, k, m] of SHAPES) {
    const w = randomWeight(type, [k, m], 10 + type);
    for (const backend of ['AMXBF16', 'AMXInt8'] as const) {
      const lin = linearLoad(w.w, backend);
      for (const n of TOKENS) {
        const x = randomF32(n * k, 100 + n);
        const y = new Float32Array(n * m).fill(Number.NaN);
        addon().amxLinearForward(lin.handle, x, n, y);
        const dt = backend === 'AMXBF16' ? 'bf16' : 'int8';
        check(y, reference(w.values, k, m, x, n), n, m, TOL[dt], REL_L2[dt], `${typeName(type)} ${backend} k=${k} m=${m} n=${n}`);
      }
      lin.dispose();
    }
    w.w.dispose();
  }
});

const dispatchSkip =
  skip || (isaInfo().active !== 'amx' ? `linear layers take AMX panels only at ISA amx (active: ${isaInfo().active})` : false);
test('linear dispatch: calls from the threshold on take the AMX panels, smaller ones the source weights', { skip: dispatchSkip }, () => {
  const [k, m] = [256, 96];
  const w = randomWeight(GgmlType.Q4_K, [k, m], 7);
  const auto = linearLoad(w.w);
  const n = info.linearMinTokens;
  assert.equal(auto.kernelName(n), 'AMXBF16', 'auto on an AMX CPU: AMX-BF16 panels for Q4_K');
  if (n > 1) assert.doesNotMatch(auto.kernelName(n - 1), /^AMX/);
  for (const nt of [n, n + 5]) {
    const x = randomF32(nt * k, 3);
    const y = new Float32Array(nt * m).fill(Number.NaN);
    linearForward(auto, x, nt, y);
    check(y, reference(w.values, k, m, x, nt), nt, m, TOL.bf16, REL_L2.bf16, `auto Q4_K n=${nt}`);
  }
  auto.dispose();
  const int8 = linearLoad(w.w, 'AMXInt8');
  assert.equal(int8.kernelName(n), 'AMXInt8');
  int8.dispose();
  const avx = linearLoad(w.w, 'AVX512');
  assert.doesNotMatch(avx.kernelName(4096), /^AMX/);
  avx.dispose();
  const f32 = randomWeight(GgmlType.F32, [k, m], 8);
  const f32auto = linearLoad(f32.w);
  assert.doesNotMatch(f32auto.kernelName(4096), /^AMX/, 'auto leaves F32 weights unrounded');
  f32auto.dispose();
  f32.w.dispose();
  w.w.dispose();
});

test('linear backends: an unknown name is a clear error; a forced AMX call without panels too', () => {
  const w = randomWeight(GgmlType.BF16, [64, 32], 9);
  assert.throws(() => linearLoad(w.w, 'AMX' as never), /unknown backend "AMX" \(known: auto, AMXBF16, AMXInt8, AVX512\)/);
  const avx = linearLoad(w.w, 'AVX512');
  assert.throws(() => addon().amxLinearForward(avx.handle, new Float32Array(64), 1, new Float32Array(32)), /no AMX panels/);
  avx.dispose();
  w.w.dispose();
});
