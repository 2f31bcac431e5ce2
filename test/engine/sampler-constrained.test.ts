// Sampler.sample with an `allow` filter (constrained decoding): the best allowed token for greedy,
// the renormalized distribution over allowed tokens when sampling, the whole-row mask after many
// rejections, a clear error when nothing is allowed, and no change without a filter.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Sampler } from '../../src/engine/sampler.ts';
import { DEFAULT_SAMPLING, type SamplingParams } from '../../src/engine/types.ts';

const OFF: SamplingParams = { ...DEFAULT_SAMPLING, temperature: 1, topK: 0, topP: 1, minP: 0 };

test('greedy: the best allowed token, even when it ranks far below the first rejected ones', () => {
  const logits = Array.from({ length: 1000 }, (_, i) => -i / 100); // id 0 best, then 1, 2, ...
  const s = new Sampler({ ...OFF, temperature: 0 });
  assert.equal(s.sample(Float32Array.from(logits), (id) => id % 7 === 3), 3);
  // More rejections than the retry budget: the whole-row mask finds id 500.
  assert.equal(s.sample(Float32Array.from(logits), (id) => id >= 500), 500);
});

test('sampling: only allowed ids are drawn, in proportion to their probabilities', () => {
  const logits = [3, 2.5, 1, 1, 0.5, 0];
  const allow = (id: number) => id === 2 || id === 4;
  const s = new Sampler({ ...OFF, seed: 7 });
  const h = new Array(logits.length).fill(0);
  const n = 20000;
  for (let i = 0; i < n; i++) h[s.sample(Float32Array.from(logits), allow)]++;
  assert.equal(h[0] + h[1] + h[3] + h[5], 0);
  const want = Math.exp(1) / (Math.exp(1) + Math.exp(0.5)); // p(2 | {2, 4})
  assert.ok(Math.abs(h[2] / n - want) < 0.02, `p(2) = ${h[2] / n}, want ${want}`);
});

test('top-k: an allowed token outside the top k is still found (the row is masked and rescanned)', () => {
  const logits = Float32Array.from({ length: 100 }, (_, i) => -i);
  const s = new Sampler({ ...DEFAULT_SAMPLING, topK: 5, seed: 1 });
  assert.equal(s.sample(logits, (id) => id === 60), 60);
});

test('nothing allowed is a clear error', () => {
  const s = new Sampler({ ...OFF, seed: 1 });
  assert.throws(() => s.sample(Float32Array.from([1, 2, 3]), () => false), /no token of the vocabulary/);
});

test('without a filter the draws are the same as before (same seed, same ids)', () => {
  const logits = Array.from({ length: 64 }, (_, i) => Math.sin(i) * 3);
  const a = new Sampler({ ...DEFAULT_SAMPLING, seed: 42 });
  const b = new Sampler({ ...DEFAULT_SAMPLING, seed: 42 });
  for (let i = 0; i < 50; i++) assert.equal(a.sample(Float32Array.from(logits)), b.sample(Float32Array.from(logits), () => true));
});
