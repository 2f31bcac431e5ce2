// bench -d (llama-bench's context depth): every timed run starts with the KV slot holding exactly the d
// depth tokens, prefilled once per depth (not per repetition or test), on the CPU placement and on the
// GPU + CPU hybrid (the CUDA stand-in where there is no GPU). Each forward step is recorded with its
// first position and the slot's length: a run that recomputed the context, or reused more than the
// depth, shows up as a different list of steps.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BenchError, benchTests, runBench } from '../../src/engine/bench.ts';
import { GgmlType } from '../../src/formats/ggml-types.ts';
import { loadModel } from '../../src/model/load.ts';
import type { LoadedModel } from '../../src/model/types.ts';
import { gpuSkip, noAddon } from '../cuda/target.ts';
import { writeSmallModel } from './small-model.ts';

const tokenizer = { eogIds: new Set<number>(), createStreamDecoder: () => ({ push: () => '', flush: () => '' }) };
type Step = [start: number, tokens: number];

/** The model with each forward step recorded as [first position, tokens]; checks the slot holds `start` positions then. */
function recording(model: LoadedModel, steps: Step[]): LoadedModel {
  return {
    config: model.config,
    gguf: model.gguf,
    ctxSize: model.ctxSize,
    nSeq: model.nSeq,
    kv: model.kv,
    loadMs: model.loadMs,
    ...(model.gpu ? { gpu: model.gpu } : {}),
    dispose: () => model.dispose(),
    forward: (b) => {
      const start = b.positions[0]!;
      assert.equal(model.kv.length(0), start, 'the slot length equals the first position of the step');
      steps.push([start, b.tokens.length]);
      return model.forward(b);
    },
  };
}

const run = (start: number, n: number): Step[] => Array.from({ length: n }, (_, i) => [start + i, 1]);

for (const placement of ['cpu', 'qwen3moe-hybrid'] as const) {
  const skip = placement === 'cpu' ? noAddon : gpuSkip();
  describe(`bench at context depth (${placement})`, { skip }, () => {
    let dir: string;
    let model: LoadedModel;
    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'mixtile-bench-depth-'));
      const path = join(dir, 'm.gguf');
      await writeSmallModel(path, { type: GgmlType.BF16, hidden: 128, nHeads: 4, nKvHeads: 2, headDim: 64, vocab: 320, nLayers: 2, seed: 5 });
      model = await loadModel(path, { ctxSize: 120, nSeq: 1, ubatch: 64, threads: 1, rules: placement });
      assert.equal(model.gpu !== undefined, placement !== 'cpu', 'the placement under test');
    });
    after(() => {
      model?.dispose();
      rmSync(dir, { recursive: true, force: true });
    });

    test('each timed run starts on exactly d cached tokens; the depth is prefilled once (chunked by ubatch)', () => {
      const steps: Step[] = [];
      const results = runBench(recording(model, steps), tokenizer, benchTests([8], [3], [0, 100]), { reps: 2, ubatch: 64 });
      assert.deepEqual(
        results.map((r) => [r.test, r.nPrompt, r.nGen, r.nDepth, r.samplesTs.length, r.ttftMs !== undefined]),
        [
          ['pp8', 8, 0, 0, 2, true],
          ['tg3', 0, 3, 0, 2, false],
          ['pp8 @ d100', 8, 0, 100, 2, true],
          ['tg3 @ d100', 0, 3, 100, 2, false],
        ],
      );
      for (const r of results) assert.ok(r.samplesTs.every((ts) => ts > 0 && Number.isFinite(ts)), `${r.test}: ${r.samplesTs}`);
      assert.deepEqual(steps, [
        // pp8, tg3: warm-up then two runs each, from an empty slot.
        [0, 8], [0, 8], [0, 8],
        [0, 1], ...run(0, 3), ...run(0, 3),
        // depth 100: one untimed prefill in ubatch chunks, then everything starts at position 100.
        [0, 64], [64, 36],
        [100, 8], [100, 8], [100, 8],
        [100, 1], ...run(100, 3), ...run(100, 3),
      ]);
    });

    test('back to depth 0 after a depth, and a depth that changes: the old context is dropped', () => {
      const steps: Step[] = [];
      runBench(recording(model, steps), tokenizer, benchTests([4], [], [20, 0, 30]), { reps: 1, ubatch: 64 });
      assert.deepEqual(steps, [[0, 20], [20, 4], [20, 4], [0, 4], [0, 4], [0, 30], [30, 4], [30, 4]]);
    });

    test('a test deeper than the loaded context is refused before any test runs', () => {
      const steps: Step[] = [];
      assert.throws(() => runBench(recording(model, steps), tokenizer, benchTests([8], [], [0, 112]), { reps: 1, ubatch: 64 }), (e: Error) => {
        assert.ok(e instanceof BenchError);
        assert.match(e.message, /pp8 @ d112 needs 121 positions of context but the model was loaded with 120/);
        return true;
      });
      assert.deepEqual(steps, []);
    });
  });
}
