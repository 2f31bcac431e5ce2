// RMSNorm: every ISA path against a float64 reference at awkward widths (1, 15, 17, 128, 2051) and
// value ranges (tiny, ordinary, large), in place and not; the AVX-512 path against the scalar one
// (they differ only in the order of the double sum of squares).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmsNormRun } from '../../src/native/norm.ts';
import { isaCases, randomF32, withIsa } from './helpers.ts';

const SHAPES: Array<[number, number]> = [
  [1, 1],
  [3, 15],
  [2, 17],
  [36, 128],
  [1, 2048],
  [2, 2051],
  // 64K+ elements: chunks of 16 rows on the pool, the last one partial.
  [77, 1000],
  [520, 128],
];
const SCALES = [1e-3, 1, 300];
const EPS = 1e-6;

function reference(x: Float32Array, w: Float32Array, rows: number, dim: number): Float64Array {
  const y = new Float64Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[r * dim + i] * x[r * dim + i];
    const scale = 1 / Math.sqrt(ss / dim + EPS);
    for (let i = 0; i < dim; i++) y[r * dim + i] = x[r * dim + i] * scale * w[i];
  }
  return y;
}

const { run } = isaCases();
for (const [rows, dim] of SHAPES) {
  for (const scale of SCALES) {
    test(`rms_norm ${rows} x ${dim}, |x| ~ ${scale}, every ISA`, () => {
      const x = randomF32(rows * dim, rows * 1000 + dim, scale);
      const w = randomF32(dim, dim + 7, 2);
      const ref = reference(x, w, rows, dim);
      let scalar: Float32Array | undefined;
      for (const isa of run) {
        const y = new Float32Array(rows * dim).fill(Number.NaN);
        withIsa(isa, () => rmsNormRun(x, w, rows, dim, EPS, y));
        for (let i = 0; i < y.length; i++) {
          const tol = 4e-7 * Math.abs(ref[i]) + 1e-30;
          assert.ok(Math.abs(y[i] - ref[i]) <= tol, `${isa}: element ${i}: ${y[i]} vs ${ref[i]}`);
        }
        if (isa === 'scalar') scalar = y;
        else for (let i = 0; i < y.length; i++) assert.ok(Math.abs(y[i] - scalar![i]) <= 2.5e-7 * Math.abs(scalar![i]), `${isa} vs scalar at ${i}`);
        // In place (y = x), as the attention block's q/k norms run.
        const inPlace = Float32Array.from(x);
        withIsa(isa, () => rmsNormRun(inPlace, w, rows, dim, EPS, inPlace));
        assert.deepEqual(inPlace, y, `${isa}: in place differs`);
      }
    });
  }
}

test('rms_norm: short arrays are an error', () => {
  assert.throws(() => rmsNormRun(new Float32Array(3), new Float32Array(2), 2, 2, EPS, new Float32Array(4)), /rmsNormRun: x/);
  assert.throws(() => rmsNormRun(new Float32Array(4), new Float32Array(1), 2, 2, EPS, new Float32Array(4)), /rmsNormRun: w/);
});
