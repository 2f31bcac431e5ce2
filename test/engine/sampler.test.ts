// Sampler on hand-made logits: each step of llama.cpp's chain, penalties, and seed reproducibility.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Sampler, Prng, topKIndices, argmax } from '../../src/engine/sampler.ts';
import { DEFAULT_SAMPLING, type SamplingParams } from '../../src/engine/types.ts';

const OFF: SamplingParams = { ...DEFAULT_SAMPLING, temperature: 1, topK: 0, topP: 1, minP: 0 };

/** Counts how often each id is drawn from fresh copies of `logits`. */
function histogram(params: SamplingParams, logits: number[], n: number): number[] {
  const s = new Sampler({ ...params, seed: 1234 });
  const h = new Array(logits.length).fill(0);
  for (let i = 0; i < n; i++) h[s.sample(Float32Array.from(logits))]++;
  return h;
}

test('greedy picks the argmax, lowest id on ties', () => {
  const s = new Sampler({ ...OFF, temperature: 0 });
  assert.equal(s.sample(Float32Array.from([0.1, 2.5, -1, 2.4])), 1);
  assert.equal(argmax(Float32Array.from([3, 1, 3])), 0);
});

test('top-k keeps exactly the k best, sorted', () => {
  const l = Float32Array.from([0.5, 3, -2, 3, 1, 7, 0]);
  assert.deepEqual([...topKIndices(l, 3)], [5, 1, 3]);
  assert.deepEqual([...topKIndices(l, 100)], [5, 1, 3, 4, 0, 6, 2]);
  const h = histogram({ ...OFF, topK: 2 }, [0, 1, 1.2, 0.9], 2000);
  assert.equal(h[0] + h[3], 0);
  assert.ok(h[1] > 500 && h[2] > 500, `both survivors drawn: ${h}`);
});

test('top-p keeps the smallest prefix reaching p', () => {
  // probs ≈ [0.5, 0.25, 0.125, 0.125]: p=0.7 keeps ids 0 and 1 (0.5 < 0.7 <= 0.75).
  const logits = [Math.log(4), Math.log(2), 0, 0];
  const h = histogram({ ...OFF, topP: 0.7 }, logits, 3000);
  assert.equal(h[2] + h[3], 0);
  assert.ok(Math.abs(h[0] / 3000 - 2 / 3) < 0.04, `renormalised 2:1, got ${h}`);
  const all = histogram({ ...OFF, topP: 0.76 }, logits, 3000);
  assert.ok(all[2] > 0 && all[3] === 0, `p just over 0.75 keeps the third: ${all}`);
});

test('min-p drops tokens below minP × the best probability', () => {
  // probs ∝ [8, 4, 1]: minP 0.2 keeps ≥ 1.6, so id 2 goes.
  const logits = [Math.log(8), Math.log(4), 0];
  const h = histogram({ ...OFF, minP: 0.2 }, logits, 2000);
  assert.equal(h[2], 0);
  const kept = histogram({ ...OFF, minP: 0.1 }, logits, 2000);
  assert.ok(kept[2] > 0);
  // The best token is not first in id order, with and without top-k.
  for (const topK of [0, 3]) {
    const h2 = histogram({ ...OFF, topK, minP: 0.2 }, [0, Math.log(8), Math.log(4)], 2000);
    assert.equal(h2[0], 0, `topK ${topK}: ${h2}`);
    assert.ok(Math.abs(h2[1] / 2000 - 2 / 3) < 0.04, `topK ${topK}: ${h2}`);
  }
});

test('temperature sharpens and flattens after top-p/min-p', () => {
  const logits = [1, 0];
  const cold = histogram({ ...OFF, temperature: 0.25 }, logits, 2000);
  const hot = histogram({ ...OFF, temperature: 4 }, logits, 2000);
  // p(0) = sigmoid(1/T): T=0.25 → 0.982, T=4 → 0.562.
  assert.ok(Math.abs(cold[0] / 2000 - 0.982) < 0.02, `cold ${cold}`);
  assert.ok(Math.abs(hot[0] / 2000 - 0.562) < 0.04, `hot ${hot}`);
});

test('repeat penalty divides positive logits and multiplies negative ones', () => {
  const s = new Sampler({ ...OFF, temperature: 0, repeatPenalty: 2, repeatLastN: 2 }, [9, 0, 1]);
  const l = Float32Array.from([3, -1, 2.5]);
  // history window [0, 1]: id 0: 3 → 1.5, id 1: -1 → -2; id 2 untouched wins.
  assert.equal(s.sample(l), 2);
  assert.deepEqual([...l], [1.5, -2, 2.5]);
});

test('presence and frequency penalties subtract per occurrence', () => {
  const s = new Sampler({ ...OFF, temperature: 0, presencePenalty: 0.5, frequencyPenalty: 0.25, repeatLastN: -1 }, [0, 0, 0, 1]);
  const l = Float32Array.from([2, 2, 1.2]);
  s.sample(l);
  assert.deepEqual([...l], [2 - 0.75 - 0.5, 2 - 0.25 - 0.5, 1.2].map(Math.fround));
});

test('penalties see sampled tokens, not only the prompt', () => {
  const s = new Sampler({ ...OFF, temperature: 0, repeatPenalty: 10, repeatLastN: 64 });
  const logits = [5, 4, 0];
  assert.equal(s.sample(Float32Array.from(logits)), 0);
  assert.equal(s.sample(Float32Array.from(logits)), 1); // 0 was penalised to 0.5
});

test('same seed, same tokens; different seed, different tokens', () => {
  const logits = Array.from({ length: 50 }, (_, i) => Math.sin(i) * 2);
  const run = (seed: number) => {
    const s = new Sampler({ ...DEFAULT_SAMPLING, topK: 0, minP: 0, topP: 1, temperature: 1.5, seed });
    return Array.from({ length: 40 }, () => s.sample(Float32Array.from(logits)));
  };
  assert.deepEqual(run(7), run(7));
  assert.notDeepEqual(run(7), run(8));
  const a = new Prng(42);
  const b = new Prng(42);
  for (let i = 0; i < 5; i++) assert.equal(a.next(), b.next());
});

test('bad parameters are refused with the field name', () => {
  assert.throws(() => new Sampler({ ...OFF, topP: 0 }), /topP/);
  assert.throws(() => new Sampler({ ...OFF, temperature: -1 }), /temperature/);
  assert.throws(() => new Sampler({ ...OFF, seed: -3 }), /seed/);
});
