// The decode glue of the GPU + CPU forward (MIXTILE_DECODE_GLUE, native/src/gpu/experts-bridge.h): how a one-token
// MoE layer takes its routing to the host and its experts' sum back. On a GPU, or in CI on the CPU stand-in:
//   - wait (default: one route kernel writing into pinned memory, the residual add queued before the experts,
//     polling a pinned flag, reading the pinned sum), mapped (the add launched after the experts), fused (the one
//     kernel, then the copies) and copy (three kernels and two copies) give the same logits bit for bit, on one-token steps of one and of two slots (graphs replayed per glue), with deferral off and on;
//   - prefill steps take the copy path whatever the setting; a bad value is a clear error.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel } from '../../src/model/load.ts';
import { synthModel } from '../../src/model/synth.ts';
import type { ForwardBatch, LoadedModel } from '../../src/model/types.ts';
import { gpuSkip } from '../cuda/target.ts';

const skip = gpuSkip();

const GLUES = ['wait', 'mapped', 'fused', 'copy'] as const;

/** Runs fn with MIXTILE_DECODE_GLUE set to glue (undefined: unset), restoring it after. */
function withGlue<T>(glue: string | undefined, fn: () => T): T {
  const old = process.env.MIXTILE_DECODE_GLUE;
  if (glue === undefined) delete process.env.MIXTILE_DECODE_GLUE;
  else process.env.MIXTILE_DECODE_GLUE = glue;
  try {
    return fn();
  } finally {
    if (old === undefined) delete process.env.MIXTILE_DECODE_GLUE;
    else process.env.MIXTILE_DECODE_GLUE = old;
  }
}

const batch = (tokens: number[], positions: number[], seqIds: number[], logitsFor: number[]): ForwardBatch => ({
  tokens: Int32Array.from(tokens),
  positions: Int32Array.from(positions),
  seqIds: Int32Array.from(seqIds),
  logitsFor: Int32Array.from(logitsFor),
});

/** Each step runs once per glue at the same positions (the slots cut back before each rerun), all logits equal. */
function sameUnderEveryGlue(m: LoadedModel, b: ForwardBatch, what: string): void {
  const start = new Map<number, number>();
  b.seqIds.forEach((s, i) => start.set(s, Math.min(start.get(s) ?? Infinity, b.positions[i]!)));
  const [first, ...rest] = GLUES.map((g) => {
    for (const [s, p] of start) m.kv.truncate(s, p);
    return withGlue(g, () => m.forward(b).slice());
  });
  rest.forEach((got, i) => assert.deepEqual(got, first, `${what}: glue ${GLUES[i + 1]} differs from ${GLUES[0]}`));
}

describe('hybrid decode glue (MIXTILE_DECODE_GLUE)', { skip }, () => {
  let dir: string;
  let tiny: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mixtile-glue-'));
    tiny = join(dir, 'tiny-bf16.gguf');
    await synthModel({ preset: 'tiny', out: tiny, fileType: 'BF16', seed: 11 });
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  for (const defer of [0, 1]) {
    test(`wait, mapped, fused and copy give the same logits bit for bit (deferral ${defer})`, async () => {
      const old = process.env.MIXTILE_DEFER_EXPERTS;
      process.env.MIXTILE_DEFER_EXPERTS = String(defer);
      const m = await loadModel(tiny, { ctxSize: 64, nSeq: 2, rules: 'qwen3moe-hybrid' });
      try {
        assert.ok(m.gpu, 'the hybrid model has a GPU context');
        const prompt = [9707, 11, 1879, 0, 151643, 33, 77091];
        sameUnderEveryGlue(m, batch(prompt, [0, 1, 2, 3, 4, 5, 6], prompt.map(() => 0), [6]), 'prefill');
        sameUnderEveryGlue(m, batch([5, 6], [0, 1], [1, 1], [1]), 'prefill of slot 1');
        for (let p = 7, t = 42; p < 12; p++, t = (t * 7919 + 13) % 151000) {
          sameUnderEveryGlue(m, batch([t], [p], [0], [0]), `slot 0 decode at ${p}`);
          sameUnderEveryGlue(m, batch([t % 97, t % 89], [p, p - 5], [0, 1], [0, 1]), `two slots decode at ${p}`);
        }
        const s = m.gpu.stats();
        assert.equal(s.graphCaptureFailures, 0);
      } finally {
        m.dispose();
        if (old === undefined) delete process.env.MIXTILE_DEFER_EXPERTS;
        else process.env.MIXTILE_DEFER_EXPERTS = old;
      }
    });
  }

  test('an unknown MIXTILE_DECODE_GLUE is a clear error', async () => {
    const m = await loadModel(tiny, { ctxSize: 16, nSeq: 1, rules: 'qwen3moe-hybrid' });
    try {
      withGlue(undefined, () => m.forward(batch([1, 2], [0, 1], [0, 0], [1])));
      assert.throws(() => withGlue('pinned', () => m.forward(batch([3], [2], [0], [0]))), /MIXTILE_DECODE_GLUE: 'pinned' is not mapped, wait, fused or copy/);
    } finally {
      m.dispose();
    }
  });
});
