// bench's test list, names and context size (llama-bench's -p/-n/-d semantics); the runs themselves
// are tested on a model in test/engine/bench-depth.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BenchError, benchContextSize, benchTests, testName } from './bench.ts';

test('benchTests: per depth, the pp tests then the tg tests, in the order given; 0 = none', () => {
  const names = benchTests([512, 0, 64], [128, 0], [0, 4096, 16384]).map(testName);
  assert.deepEqual(names, [
    'pp512', 'pp64', 'tg128',
    'pp512 @ d4096', 'pp64 @ d4096', 'tg128 @ d4096',
    'pp512 @ d16384', 'pp64 @ d16384', 'tg128 @ d16384',
  ]);
  assert.deepEqual(benchTests([0], [0], [0, 4096]), []);
  // As llama-bench, a repeated depth runs its tests again.
  assert.equal(benchTests([8], [], [16, 16]).length, 2);
});

test('benchContextSize: the deepest test + 1 position; past the model context a BenchError names the test', () => {
  assert.equal(benchContextSize(benchTests([512], [128], [0]), 4096), 513);
  assert.equal(benchContextSize(benchTests([512], [128], [0, 4096, 1000]), 40960), 4096 + 512 + 1);
  // tg deeper than pp: the tg test decides.
  assert.equal(benchContextSize(benchTests([16], [600], [100]), 4096), 701);
  assert.equal(benchContextSize(benchTests([511], [], [3584]), 4096), 4096);
  assert.throws(() => benchContextSize(benchTests([512], [128], [0, 3584]), 4096), (e: Error) => {
    assert.ok(e instanceof BenchError);
    assert.match(e.message, /^pp512 @ d3584 needs 4097 positions of context \(depth 3584 \+ 512 tokens \+ 1\) but the model's context length is 4096; lower -d, -p or -n$/);
    return true;
  });
});
