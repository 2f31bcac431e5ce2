// F32 -> F16 rows (the KV cache's f16 write): every ISA path gives the scalar reference's bits for
// ordinary values, ties (round to nearest even), subnormals, overflow, ±0, ±inf and NaN, at lengths
// that leave every tail size of a 16-wide block; too-short outputs are an error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { f16RowRun } from '../../src/native/kv-cache.ts';
import { isaCases, randomF32, withIsa } from './helpers.ts';

function specials(): Float32Array {
  const v: number[] = [0, -0, Infinity, -Infinity, NaN, 65504, 65519, 65520, 1e6, -1e6, 6.1e-5, 6.0e-5, 5.96e-8, 2.98e-8, 2.99e-8, 1e-9];
  // Ties between two halves at several exponents: x = (h + 0.5 ulp), even and odd h.
  for (const base of [1, 2.5, 1000, 3e-6]) {
    const ulp = 2 ** (Math.floor(Math.log2(base)) - 10);
    v.push(base + ulp / 2, base + (3 * ulp) / 2, -(base + ulp / 2));
  }
  const bits = new Uint32Array([0x7fc00001, 0xffa00000, 0x387fe000, 0x38800000, 0x337fffff]);
  v.push(...new Float32Array(bits.buffer));
  return Float32Array.from(v);
}

const { run } = isaCases();
for (const n of [0, 1, 15, 16, 17, 33, 1024, 1031]) {
  test(`f16 row n=${n}, every ISA matches scalar bit for bit`, () => {
    const x = randomF32(n, n + 3, 40);
    const sp = specials();
    for (let i = 0; i < n; i += 7) x[i] = sp[(i / 7) % sp.length];
    let ref: Uint16Array | undefined;
    for (const isa of run) {
      const y = new Uint16Array(n).fill(0xdead);
      withIsa(isa, () => f16RowRun(x, y));
      if (isa === 'scalar') ref = y;
      else assert.deepEqual(y, ref, `${isa} differs from scalar`);
    }
  });
}

test('f16 row: the specials alone, and a short output is an error', () => {
  const sp = specials();
  const outs = run.map((isa) => {
    const y = new Uint16Array(sp.length);
    withIsa(isa, () => f16RowRun(sp, y));
    return y;
  });
  for (const y of outs) assert.deepEqual(y, outs[0]);
  assert.equal(outs[0][7], 0x7c00, '65520 rounds to +inf');
  assert.equal(outs[0][6], 0x7bff, '65519 stays at the largest half');
  assert.throws(() => f16RowRun(new Float32Array(4), new Uint16Array(3)), /shorter than src/);
});
