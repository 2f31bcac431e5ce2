// Thread pool hand-out: each task of a job runs exactly once, at any task count and pool size, and
// a worker that is not scheduled (simulated: it sleeps before claiming work) does not hold jobs up,
// since the caller waits only for tasks that were claimed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GgmlType } from '../../src/formats/ggml-types.ts';
import { poolRunCounts, poolStallWorker } from '../../src/native/isa.ts';
import { linearForward, linearLoad } from '../../src/native/linear.ts';
import { randomF32, randomWeight, withThreads } from './helpers.ts';

test('every task runs exactly once, thread indices within the pool', () => {
  for (const threads of [1, 2, 3, 5]) {
    withThreads(threads, () => {
      for (const n of [1, 2, 3, 7, 64, 1001, 40000]) {
        for (let rep = 0; rep < 3; rep++) {
          const { counts, maxThread } = poolRunCounts(n);
          const bad = counts.findIndex((c) => c !== 1);
          assert.equal(bad, -1, `threads ${threads}, ${n} tasks: task ${bad} ran ${counts[bad]} times`);
          assert.ok(maxThread >= 0 && maxThread < threads, `thread index ${maxThread} with ${threads} threads`);
        }
      }
    });
  }
});

test('a stalled worker does not hold jobs up, and results are unchanged', () => {
  const { w } = randomWeight(GgmlType.Q4_K, [512, 301], 77);
  const lin = linearLoad(w, 'AVX512');
  w.dispose();
  const x = randomF32(512, 78);
  withThreads(3, () => {
    const ref = new Float32Array(301);
    linearForward(lin, x, 1, ref);
    const STALL_US = 150_000;
    const CALLS = 8;
    poolStallWorker(2, STALL_US);
    try {
      const t0 = performance.now();
      for (let c = 0; c < CALLS; c++) {
        const y = new Float32Array(301).fill(Number.NaN);
        linearForward(lin, x, 1, y);
        assert.deepEqual(y, ref, `call ${c}`);
        const counts = poolRunCounts(97).counts;
        assert.equal(counts.findIndex((v) => v !== 1), -1, `call ${c}: a task did not run exactly once`);
      }
      const ms = performance.now() - t0;
      // A pool that waits for every worker would take at least CALLS * 2 jobs * the stall (2.4 s).
      assert.ok(ms < (CALLS * STALL_US) / 1000 / 2, `${CALLS} calls took ${ms.toFixed(0)} ms with one worker stalled ${STALL_US / 1000} ms per job`);
    } finally {
      poolStallWorker(2, 0);
    }
  });
  lin.dispose();
  assert.throws(() => withThreads(2, () => poolStallWorker(2, 10)), /worker must be in \[1, 2\)/);
});
