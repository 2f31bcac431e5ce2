// The experts' schedules give the same bits at every pool size: small calls (decode) run as one
// pool job whose down blocks wait per expert for gate/up and whose last finisher of a row block
// writes y; large calls run in phases. A down block that read h before its expert was ready, or a
// y block summed before all its experts, would change the output. Also with a worker that stalls
// before it claims work (as one whose core another process holds), and a routing that gives some
// experts two pairs of the same token.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GgmlType } from '../../src/formats/ggml-types.ts';
import { expertsLoad, moeForwardRouted } from '../../src/native/experts.ts';
import { poolStallWorker } from '../../src/native/isa.ts';
import { randomF32, randomWeight, rng, withThreads } from './helpers.ts';

const HIDDEN = 256;
const FFN = 512;
const N_EXPERT = 12;
const TOP_K = 5;

function routing(n: number, seed: number): { ids: Int32Array; weights: Float32Array } {
  const r = rng(seed);
  const ids = new Int32Array(n * TOP_K);
  const weights = new Float32Array(n * TOP_K);
  for (let i = 0; i < n * TOP_K; i++) {
    // Slot 1 repeats slot 0's expert on odd tokens: an expert with two rows of one token.
    ids[i] = i % TOP_K === 1 && Math.floor(i / TOP_K) % 2 === 1 ? ids[i - 1] : Math.floor(r() * N_EXPERT);
    weights[i] = 0.1 + r();
  }
  return { ids, weights };
}

test('experts: same bits at 1, 2, 3 and 5 threads, with and without a stalled worker, small and large calls', () => {
  const gate = randomWeight(GgmlType.Q4_K, [HIDDEN, FFN, N_EXPERT], 11);
  const up = randomWeight(GgmlType.Q4_K, [HIDDEN, FFN, N_EXPERT], 12);
  const down = randomWeight(GgmlType.Q6_K, [FFN, HIDDEN, N_EXPERT], 13);
  const router = randomWeight(GgmlType.F32, [HIDDEN, N_EXPERT], 14);
  const ex = expertsLoad({ gate: gate.w, up: up.w, down: down.w, router: router.w });
  for (const w of [gate.w, up.w, down.w, router.w]) w.dispose();
  // 1 and 3 tokens: one fused job; 40 tokens: phases (h conversion and sum past the serial limit).
  for (const n of [1, 3, 40]) {
    // Two inputs and routings, alternated: the scratch keeps the previous call's h and o, so a block
    // read too early shows up as the other input's values.
    const cases = [0, 1].map((c) => ({ x: randomF32(n * HIDDEN, 20 + n + 100 * c), ...routing(n, 30 + n + 100 * c) }));
    const run = (c: number): Float32Array => {
      const y = new Float32Array(n * HIDDEN).fill(Number.NaN);
      moeForwardRouted(ex, cases[c].x, n, cases[c].ids, cases[c].weights, TOP_K, y);
      return y;
    };
    const ref = withThreads(1, () => [run(0), run(1)]);
    assert.ok(ref.every((y) => y.every(Number.isFinite)), `n=${n}: finite output`);
    for (const threads of [2, 3, 5]) {
      withThreads(threads, () => {
        for (let rep = 0; rep < 40; rep++) assert.deepEqual(run(rep % 2), ref[rep % 2], `n=${n} threads=${threads} rep ${rep}`);
        poolStallWorker(threads - 1, 300);
        try {
          for (let rep = 0; rep < 10; rep++) {
            assert.deepEqual(run(rep % 2), ref[rep % 2], `n=${n} threads=${threads} stalled, rep ${rep}`);
          }
        } finally {
          poolStallWorker(threads - 1, 0);
        }
      });
    }
  }
  ex.dispose();
});
