// Expert deferral on decode steps (rules kwarg max_deferred_experts_per_token, native/src/gpu/deferred-experts.h)
// through the GPU + CPU forward: on a GPU, or in CI on the CPU stand-in of the CUDA library.
//   - 0 held back is bit-identical to rules without the kwarg (the code path before deferral existed);
//   - the preset's 2 is capped at a quarter of top-k (top-4 here: 1);
//   - the overlapped schedule (a layer's held-back experts computed while the next layer's GPU work runs) gives
//     bit for bit the logits of the reference schedule (MIXTILE_DEFER_EAGER=1: computed at once, added at the
//     same place), and so does the experimental helper-thread schedule (MIXTILE_DEFER_ASYNC=1), for both join
//     points; prefill steps are untouched, decode steps change;
//   - with one layer the math is the same as without deferral (the part joins before the final norm), so the
//     logits agree to float rounding: the part is added once, at the end, not lost.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cudaInfo } from '../../src/native/cuda.ts';
import { loadModel } from '../../src/model/load.ts';
import { synthModel } from '../../src/model/synth.ts';
import type { LoadedModel } from '../../src/model/types.ts';

const ADDON = process.env.MIXTILE_ADDON ?? fileURLToPath(new URL('../../native/build/Release/mixtile.node', import.meta.url));
const STAND_IN = join(dirname(ADDON), 'libmixtile-cuda-host.so');
const HYBRID_RULES = fileURLToPath(new URL('../../src/optimize/rules/qwen3moe-hybrid.yaml', import.meta.url));

function skipReason(): string | false {
  if (!existsSync(ADDON)) return `native addon not built (${ADDON})`;
  if (!process.env.MIXTILE_CUDA_LIB && !existsSync('/dev/nvidiactl') && existsSync(STAND_IN)) process.env.MIXTILE_CUDA_LIB = STAND_IN;
  const info = cudaInfo(process.env.MIXTILE_CUDA_LIB);
  return info.available ? false : `no GPU and no CUDA stand-in: ${info.reason}`;
}
const skip = skipReason();

/** Runs fn with these environment variables set (undefined: unset), restoring them after. */
function withEnv<T>(vars: Record<string, string | undefined>, fn: () => T): T {
  const old = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const set = (v: Record<string, string | undefined>) => {
    for (const [k, x] of Object.entries(v)) {
      if (x === undefined) delete process.env[k];
      else process.env[k] = x;
    }
  };
  set(vars);
  try {
    return fn();
  } finally {
    set(old);
  }
}

const PROMPT = [9707, 11, 1879, 0, 151643, 33];
const DECODE = [77091, 3838, 374, 1000, 42, 7, 151000, 5];

/** Logits of a 6-token prefill (every row) and 8 teacher-forced decode steps; schedule: the held-back parts'
 * reference schedule (computed at once) or the experimental helper thread, else the overlapped default. */
function run(m: LoadedModel, schedule: 'overlap' | 'eager' | 'async' = 'overlap'): { prefill: Float32Array; decode: Float32Array[] } {
  const all = Int32Array.from(PROMPT.keys());
  const prefill = m.forward({ tokens: Int32Array.from(PROMPT), positions: all, seqIds: new Int32Array(PROMPT.length), logitsFor: all }).slice();
  const decode = DECODE.map((t, s) =>
    withEnv({ MIXTILE_DEFER_EAGER: schedule === 'eager' ? '1' : undefined, MIXTILE_DEFER_ASYNC: schedule === 'async' ? '1' : undefined }, () =>
      m.forward({ tokens: Int32Array.of(t), positions: Int32Array.of(PROMPT.length + s), seqIds: Int32Array.of(0), logitsFor: Int32Array.of(0) }).slice(),
    ),
  );
  return { prefill, decode };
}

/** max |a - b| / rms(a). */
function relDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  let sq = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    sq += a[i]! * a[i]!;
  }
  return d / Math.sqrt(sq / a.length);
}
const same = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

describe('expert deferral on decode steps (GPU + CPU forward)', { skip }, () => {
  let dir: string;
  let four: string;
  let one: string;
  const models: LoadedModel[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mixtile-defer-'));
    four = join(dir, 'tiny-4l.gguf');
    one = join(dir, 'tiny-1l.gguf');
    // 4 of 8 experts per token, so 2 can be held back with 2 left.
    await synthModel({ preset: 'tiny', out: four, fileType: 'BF16', layers: 4, expertsUsed: 4, seed: 11 });
    await synthModel({ preset: 'tiny', out: one, fileType: 'BF16', layers: 1, expertsUsed: 4, seed: 12 });
  });
  after(() => {
    for (const m of models) m.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Loads with the hybrid rules (or a rules file) and MIXTILE_DEFER_* as given (unset otherwise). */
  async function load(path: string, env: { n?: string; join?: string } = {}, rules = 'qwen3moe-hybrid'): Promise<LoadedModel> {
    const old = { n: process.env.MIXTILE_DEFER_EXPERTS, join: process.env.MIXTILE_DEFER_JOIN };
    const set = (k: string, v: string | undefined) => (v === undefined ? delete process.env[k] : (process.env[k] = v));
    set('MIXTILE_DEFER_EXPERTS', env.n);
    set('MIXTILE_DEFER_JOIN', env.join);
    try {
      const m = await loadModel(path, { ctxSize: 64, nSeq: 1, rules });
      models.push(m);
      assert.ok(m.gpu, 'the model has a GPU context');
      return m;
    } finally {
      set('MIXTILE_DEFER_EXPERTS', old.n);
      set('MIXTILE_DEFER_JOIN', old.join);
    }
  }

  /** The hybrid preset with its deferral kwargs replaced by these lines ('' = none). */
  function rulesWith(kwargs: string): string {
    const preset = readFileSync(HYBRID_RULES, 'utf8');
    const text = preset.replace(/ {6}max_deferred_experts_per_token: .*\n {6}deferred_experts_join: .*\n/, kwargs);
    assert.notEqual(text, preset, 'the preset still has the deferral kwargs this test edits');
    const file = join(dir, `rules-${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(file, text);
    return file;
  }

  test('0 held back is bit-identical to the rules without the kwarg', async () => {
    const base = await load(four, {}, rulesWith(''));
    const baseOut = run(base);
    const zero = run(await load(four, {}, rulesWith('      max_deferred_experts_per_token: 0\n')));
    const envZero = run(await load(four, { n: '0' }));
    assert.equal(base.gpu!.stats().expertsDeferred, 0);
    for (const other of [zero, envZero]) {
      assert.ok(same(baseOut.prefill, other.prefill), 'prefill logits');
      baseOut.decode.forEach((b, s) => assert.ok(same(b, other.decode[s]!), `decode step ${s}`));
    }
  });

  test('the preset defers nothing; the rules kwargs reach the MoE blocks, capped at a quarter of top-k; out-of-range counts are refused', async () => {
    const preset = await load(four);
    run(preset);
    const capped = await load(four, {}, rulesWith('      max_deferred_experts_per_token: 3\n      deferred_experts_join: attention\n'));
    const ref = await load(four, { n: '1', join: 'attention' });
    const got = run(capped);
    const want = run(ref, 'eager');
    got.decode.forEach((g, s) => assert.ok(same(g, want.decode[s]!), `decode step ${s}: 3 asked = 1 held back (top-4 / 4)`));
    assert.equal(preset.gpu!.stats().expertsDeferred, 0, 'the preset is exact: deferral is opt-in');
    assert.equal(capped.gpu!.stats().expertsDeferred, 4 * DECODE.length, 'one held-back part per layer and decode step');
    await assert.rejects(load(four, { n: '5' }), /max_deferred_experts_per_token .*\[0, 4\]/);
  });

  for (const joinAt of ['moe', 'attention']) {
    test(`join ${joinAt}: the overlapped schedule equals the reference schedule bit for bit; prefill untouched`, async () => {
      const plain = run(await load(four, { n: '0' }));
      const lazy = await load(four, { n: '2', join: joinAt });
      const got = run(lazy);
      const ref = run(await load(four, { n: '2', join: joinAt }), 'eager');
      const helper = run(await load(four, { n: '2', join: joinAt }), 'async');
      assert.ok(same(plain.prefill, got.prefill), 'prefill steps do not defer');
      got.decode.forEach((g, s) => assert.ok(same(g, ref.decode[s]!), `decode step ${s}: overlapped vs reference schedule`));
      helper.decode.forEach((g, s) => assert.ok(same(g, ref.decode[s]!), `decode step ${s}: helper thread (MIXTILE_DEFER_ASYNC) vs reference schedule`));
      const moved = got.decode.map((g, s) => relDiff(plain.decode[s]!, g));
      assert.ok(Math.max(...moved) > 1e-4, `deferral changes decode logits (max|diff|/rms per step: ${moved.map((x) => x.toExponential(1)).join(' ')})`);
      const st = lazy.gpu!.stats();
      assert.equal(st.expertsDeferred, 4 * DECODE.length);
      assert.ok(st.expertsDeferredMs > 0);
    });
  }

  test('one layer: the held-back part joins once, before the final norm (same math as no deferral)', async () => {
    const plain = run(await load(one, { n: '0' }));
    for (const joinAt of ['moe', 'attention']) {
      const got = run(await load(one, { n: '2', join: joinAt }));
      got.decode.forEach((g, s) => {
        const d = relDiff(plain.decode[s]!, g);
        assert.ok(d < 1e-4, `join ${joinAt}, decode step ${s}: max|diff|/rms ${d.toExponential(2)} (only float rounding expected)`);
      });
    }
  });
});
