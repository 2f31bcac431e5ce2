// Native row dequantization against the formats references (bit-exact: both follow ggml).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GgmlType } from '../../src/formats/ggml-types.ts';
import { randomWeight, typeName, WEIGHT_TYPES, blockSize } from './helpers.ts';

// Rows x row length: 3 rows of 2 blocks (K-quants: 512 elements), small enough for the TS quantizers.
const CASES = WEIGHT_TYPES.map((type) => ({ type, k: Math.max(2 * blockSize(type), 96), rows: 3 }));

for (const c of CASES) {
  test(`dequantize ${typeName(c.type)} k=${c.k} rows=${c.rows} matches the TS reference`, () => {
    const { w, values } = randomWeight(c.type, [c.k, c.rows], 11 + c.type);
    const got = w.dequantizeRows(0, c.rows);
    assert.equal(got.length, values.length);
    for (let i = 0; i < got.length; i++) {
      if (got[i] !== values[i]) assert.fail(`${typeName(c.type)}: element ${i}: native ${got[i]} != reference ${values[i]}`);
    }
    const tail = w.dequantizeRows(c.rows - 1, 1);
    assert.deepEqual(tail, values.subarray((c.rows - 1) * c.k));
    w.dispose();
  });
}

test('dequantizeRows rejects rows past the end', () => {
  const { w } = randomWeight(GgmlType.Q8_0, [64, 2], 3);
  assert.throws(() => w.dequantizeRows(1, 2), /nRows/);
  assert.throws(() => w.dequantizeRows(3, 0), /row0/);
  w.dispose();
});
