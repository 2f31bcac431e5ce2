// QuantPool: worker results equal the in-thread reference and come back in order; errors surface.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { QuantPool, quantizeOrdered } from '../../src/formats/quant-pool.ts';
import { quantize } from '../../src/formats/quant.ts';
import { GgmlType } from '../../src/formats/ggml-types.ts';

test('pool results equal quantize(), in submission order, including views into larger buffers', async () => {
  const pool = new QuantPool(2);
  try {
    const big = Float32Array.from({ length: 256 * 12 }, (_, i) => Math.sin(i * 0.37) * (1 + (i % 7)));
    // Chunks of different sizes and types so a reordering would show.
    const chunks = [big.subarray(0, 256), big.subarray(256, 256 * 9), big.subarray(256 * 9)];
    async function* src() {
      for (const c of chunks) yield c;
    }
    const out: Uint8Array[] = [];
    for await (const q of quantizeOrdered(pool, GgmlType.Q4_K, src(), 2)) out.push(q);
    assert.equal(out.length, 3);
    out.forEach((q, i) => assert.deepEqual(q, quantize(GgmlType.Q4_K, chunks[i]), `chunk ${i}`));
    assert.equal(big.length, 256 * 12, 'the caller\'s buffer was not transferred away');
    assert.deepEqual(await pool.quantize(GgmlType.Q6_K, big.slice(0, 512)), quantize(GgmlType.Q6_K, big.subarray(0, 512)));
    await assert.rejects(pool.quantize(GgmlType.Q4_K, new Float32Array(100)), /Q4_K works on blocks of 256 values, got 100/);
  } finally {
    await pool.close();
  }
});
