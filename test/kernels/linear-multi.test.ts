// linear_forward_multi (attention's q/k/v in one pool job): every layer's output equals its own
// linearForward call bit for bit, at every ISA level, for awkward row counts, mixed weight types
// (shared and separate activation conversions) and thread counts; unequal inputs are an error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GgmlType } from '../../src/formats/ggml-types.ts';
import { isaInfo, setThreads } from '../../src/native/isa.ts';
import { linearForward, linearForwardMulti, linearLoad, type LinearHandle } from '../../src/native/linear.ts';
import { isaCases, randomF32, randomWeight, typeName, withIsa } from './helpers.ts';

const K = 512; // 2 K-quant super-blocks, 16 Q8_0 blocks
// Mixed sets: K-quants share one Q8_K conversion; with Q8_0 / BF16 / F32 there are several.
const SETS: { types: GgmlType[]; rows: number[] }[] = [
  { types: [GgmlType.Q4_K, GgmlType.Q4_K, GgmlType.Q6_K], rows: [133, 17, 17] },
  { types: [GgmlType.Q4_K, GgmlType.Q8_0, GgmlType.BF16, GgmlType.F32, GgmlType.Q5_K], rows: [37, 5, 70, 1, 16] },
  { types: [GgmlType.Q6_K], rows: [1000] },
];

function loadSet(types: GgmlType[], rows: number[], seed: number): LinearHandle[] {
  return types.map((t, i) => {
    const { w } = randomWeight(t, [K, rows[i]], seed + 13 * i);
    const lin = linearLoad(w, 'AVX512');
    w.dispose();
    return lin;
  });
}

const { run } = isaCases();
for (const [si, set] of SETS.entries()) {
  const lins = loadSet(set.types, set.rows, 500 + 31 * si);
  const label = set.types.map((t, i) => `${typeName(t)}x${set.rows[i]}`).join('+');
  for (const n of [1, 3, 17]) {
    for (const isa of run) {
      test(`linear multi ${label} n=${n} isa=${isa}`, () => {
        const x = randomF32(n * K, 9 * n + si);
        const single = lins.map((l) => {
          const y = new Float32Array(n * l.m).fill(Number.NaN);
          withIsa(isa, () => linearForward(l, x, n, y));
          return y;
        });
        const before = isaInfo().threads;
        try {
          for (const threads of [1, 2, 3]) {
            setThreads(threads);
            const outs = lins.map((l) => new Float32Array(n * l.m).fill(Number.NaN));
            withIsa(isa, () => linearForwardMulti(lins, x, n, outs));
            for (let i = 0; i < lins.length; i++) assert.deepEqual(outs[i], single[i], `layer ${i} at ${threads} threads`);
          }
        } finally {
          setThreads(before);
        }
      });
    }
  }
}

test('linear multi: layers with different input sizes are an error', () => {
  const a = randomWeight(GgmlType.Q4_K, [512, 4], 1);
  const b = randomWeight(GgmlType.Q4_K, [256, 4], 2);
  const la = linearLoad(a.w, 'AVX512');
  const lb = linearLoad(b.w, 'AVX512');
  assert.throws(
    () => linearForwardMulti([la, lb], new Float32Array(512), 1, [new Float32Array(4), new Float32Array(4)]),
    /differ in input features \(512 vs 256\)/,
  );
  assert.throws(() => linearForwardMulti([la], new Float32Array(512), 1, []), /1-16 handles and as many outputs/);
  la.dispose();
  lb.dispose();
});
