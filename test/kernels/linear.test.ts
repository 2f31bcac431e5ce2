// Linear kernels: every weight type x every ISA level this CPU runs, at awkward sizes.
// Scalar is checked against a float64 reference over the TS-decoded weights (bound = activation
// quantization error); every other level is checked against scalar (bound = float reorder noise).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GgmlType } from '../../src/formats/ggml-types.ts';
import { linearForward, linearLoad } from '../../src/native/linear.ts';
import type { IsaLevel } from '../../src/native/isa.ts';
import { blockSize, dotBound, isaCases, randomF32, randomWeight, typeName, WEIGHT_TYPES, withIsa, worstRatio } from './helpers.ts';

// Row length: 2 blocks + an odd tail for the plain types (88: not a multiple of 16 or 32 lanes);
// 3 blocks for Q8_0; 2 super-blocks for K-quants. 37 rows: not a multiple of any row tile.
function rowLength(t: GgmlType): number {
  if (blockSize(t) === 1) return 88;
  if (t === GgmlType.Q8_0) return 96;
  return 512;
}
const ROWS = 37;
// 28 and 59: the token-lane kernels (16+ tokens) run a last group of 12 / 11 tokens padded to 16.
const TOKENS = [1, 3, 17, 28, 59, 129];

const { run, missing } = isaCases();

for (const type of WEIGHT_TYPES) {
  const k = rowLength(type);
  const { w, values } = randomWeight(type, [k, ROWS], 100 + type);
  // The GEMM kernels over the source weights at every level; AMX panels (BF16/INT8 activations, not
  // Q8) take prefill calls where AMX exists and have their own test (amx-linear.test.ts).
  const lin = linearLoad(w, 'AVX512');
  w.dispose(); // the linear handle keeps the bytes alive

  for (const n of TOKENS) {
    const x = randomF32(n * k, 7 * n + type);
    const absWX = (t: number, r: number): number => {
      let s = 0;
      for (let i = 0; i < k; i++) s += Math.abs(values[r * k + i] * x[t * k + i]);
      return s;
    };
    let scalar: Float32Array | undefined;

    for (const isa of run) {
      test(`linear ${typeName(type)} k=${k} m=${ROWS} n=${n} isa=${isa}`, () => {
        const y = new Float32Array(n * ROWS).fill(Number.NaN);
        withIsa(isa, () => linearForward(lin, x, n, y));
        if (isa === 'scalar') {
          const ref = new Float64Array(n * ROWS);
          for (let t = 0; t < n; t++) {
            for (let r = 0; r < ROWS; r++) {
              let s = 0;
              for (let i = 0; i < k; i++) s += values[r * k + i] * x[t * k + i];
              ref[t * ROWS + r] = s;
            }
          }
          const { ratio, at } = worstRatio(y, ref, (i) => dotBound(type, values, (i % ROWS) * k, x, Math.floor(i / ROWS) * k, k));
          assert.ok(ratio <= 1, `scalar vs float64: output ${at}: ${y[at]} vs ${ref[at]} (${ratio.toFixed(2)} x bound)`);
          scalar = y;
        } else {
          assert.ok(scalar, 'scalar ran first');
          const { ratio, at } = worstRatio(y, scalar, (i) => 1e-4 * absWX(Math.floor(i / ROWS), i % ROWS) + 1e-6);
          assert.ok(ratio <= 1, `${isa} vs scalar: output ${at}: ${y[at]} vs ${scalar[at]} (${ratio.toFixed(2)} x bound)`);
        }
      });
    }
  }
}

for (const isa of missing) {
  test(`linear isa=${isa}`, { skip: `this CPU lacks ${isa}` }, () => {});
}

test('linear rejects short arrays, wrong handles and disposed handles', () => {
  const { w } = randomWeight(GgmlType.F32, [32, 4], 1);
  const lin = linearLoad(w);
  assert.throws(() => linearForward(lin, new Float32Array(31), 1, new Float32Array(4)), /x: expected at least 32/);
  assert.throws(() => linearForward(lin, new Float32Array(32), 1, new Float32Array(3)), /out: expected at least 4/);
  assert.throws(() => linearForward(lin, new Float64Array(32) as unknown as Float32Array, 1, new Float32Array(4)), /Float32Array/);
  assert.throws(() => linearLoad({ handle: {}, dims: [32, 4] } as never), /native handle/);
  lin.dispose();
  lin.dispose();
  assert.throws(() => linearForward(lin, new Float32Array(32), 1, new Float32Array(4)), /disposed/);
  w.dispose();
  assert.throws(() => linearLoad(w), /disposed/);
});

test('each ISA level selects its own fast path', (t) => {
  const expect: [GgmlType, IsaLevel][] = [
    [GgmlType.BF16, 'avx512bf16'],
    [GgmlType.Q4_K, 'avx512vnni'],
    [GgmlType.Q5_K, 'avx512vnni'],
    [GgmlType.Q6_K, 'avx512vnni'],
    [GgmlType.Q8_0, 'avx512vnni'],
    [GgmlType.F32, 'avx512'],
    [GgmlType.F16, 'avx512'],
    [GgmlType.BF16, 'avx2'],
    [GgmlType.Q4_K, 'avx2'],
    [GgmlType.Q6_K, 'avx2'],
    [GgmlType.Q8_0, 'avx2'],
    [GgmlType.F32, 'avx2'],
    [GgmlType.F16, 'avx2'],
  ];
  let checked = 0;
  for (const [type, isa] of expect) {
    if (!run.includes(isa)) continue;
    const { w } = randomWeight(type, [rowLength(type), 4], 1);
    const lin = linearLoad(w);
    const name = typeName(type).toLowerCase();
    assert.equal(withIsa(isa, () => lin.kernelName(3)), `${name}-${isa}`);
    if ((type === GgmlType.Q4_K || type === GgmlType.Q5_K || type === GgmlType.Q6_K) && isa === 'avx512vnni') {
      // 16+ tokens switch to the token-lane kernel (LANES_MIN_TOKENS in matmul.cc).
      assert.equal(withIsa(isa, () => lin.kernelName(16)), `${name}-lanes-${isa}`);
      assert.equal(withIsa(isa, () => lin.kernelName(15)), `${name}-${isa}`);
    }
    assert.equal(withIsa('scalar', () => lin.kernelName(3)), `${name}-scalar`);
    lin.dispose();
    w.dispose();
    checked++;
  }
  if (checked === 0) t.skip('this CPU has no AVX2 or AVX-512 fast path');
});
