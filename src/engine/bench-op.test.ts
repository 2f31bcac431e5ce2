// `bench --op experts --device cpu,gpu,split` on tiny shapes: one row per (tokens, placement), each
// placement really where it says. Runs on the CPU stand-in of the CUDA library where there is no GPU.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { benchOp, parseDevices } from './bench-op.ts';
import { standInUnlessSet } from '../../test/cuda/target.ts';

const skip = standInUnlessSet();

test('bench --op experts --device: cpu / gpu / split rows per token count', { skip }, () => {
  const log = console.log;
  console.log = () => {};
  try {
    const rows = benchOp('experts', { type: 'q8_0', tokens: [1, 6], devices: ['cpu', 'gpu', 'split'], hidden: 256, ffn: 256, nExpert: 8, topK: 2, reps: 1, probeMiB: 0 });
    assert.deepEqual(rows.map((r) => `${r.tokens} ${r.placement}`), ['1 cpu', '1 gpu', '1 split', '6 cpu', '6 gpu', '6 split']);
    for (const r of rows) {
      assert.ok(r.ms > 0 && Number.isFinite(r.predictedMs!), `${r.tokens} ${r.placement}: ms ${r.ms}`);
      const used = r.gpuExperts! + r.cpuExperts!;
      assert.ok(used >= 2 && used <= 8, `${r.tokens} ${r.placement}: ${used} experts`);
      if (r.placement === 'cpu') assert.equal(r.gpuExperts, 0);
      if (r.placement === 'gpu') assert.equal(r.cpuExperts, 0);
    }
  } finally {
    console.log = log;
  }
});

test('bench --device: unknown placements are refused', () => {
  assert.deepEqual(parseDevices('cpu, split'), ['cpu', 'split']);
  assert.throws(() => parseDevices('cpu,tpu'), /--device: "tpu" is not cpu, gpu or split/);
});
