// The engine's every logit against the float64 reference (test/reference/qwen3moe-f64.ts) on
// `synth --preset tiny` models at F32, BF16, Q8_0 and Q4_K_M: one-batch prefill, token-by-token
// decode, two sequences interleaved in one batch, ubatch chunking, f16 KV, and KV slot copies.
//
// Two comparisons per case:
//  - against the reference with kernel-style activation rounding (bf16 / Q8_0 / Q8_K inputs to each
//    matrix, as the kernels convert them): only summation order differs, so the tolerance is tight
//    for every dtype;
//  - against the exact float64 reference: the cost of activation rounding, looser per dtype.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { synthModel } from '../../src/model/synth.ts';
import { loadModel } from '../../src/model/load.ts';
import type { LoadedModel } from '../../src/model/types.ts';
import { ReferenceModel } from '../reference/qwen3moe-f64.ts';

const ADDON = process.env.MIXTILE_ADDON ?? fileURLToPath(new URL('../../native/build/Release/mixtile.node', import.meta.url));
const skip = existsSync(ADDON) ? false : `native addon not built (${ADDON}); run npm run build:native`;

// Tolerances as a fraction of the reference logits' standard deviation (max |diff| over every
// logit of every position). Measured (seed 11): rounded <= 1e-6 x std for every dtype; exact
// BF16 1.6e-2, Q8_0 5.3e-2, Q4_K_M 8.1e-2; the tolerances leave about 2x room.
const TOL_ROUNDED = 2e-3;
const TOL_EXACT: Record<string, number> = { F32: 1e-3, BF16: 0.05, Q8_0: 0.12, Q4_K_M: 0.16 };
// f16 KV adds rounding of K and V (11-bit mantissa); compared with the exact reference, since with
// quantized activations a tiny change can flip a rounding step and the rounded reference no longer
// applies. F32 files show the f16 cost alone.
const TOL_F16_KV: Record<string, number> = { F32: 5e-3, BF16: 0.05, Q8_0: 0.12, Q4_K_M: 0.16 };

const PROMPT_A = [9707, 11, 1879, 0, 151643, 33, 77091];
const PROMPT_B = [40, 1079, 264, 12, 220];

interface Compare {
  maxDiff: number;
  std: number;
}

/** max |got - want| over rows, and the (mean over rows of) std of want. */
function compare(got: Float32Array, gotRow: number, want: Float64Array): Compare {
  const V = want.length;
  let maxDiff = 0;
  let mean = 0;
  let sq = 0;
  for (let v = 0; v < V; v++) {
    const w = want[v]!;
    const d = Math.abs(got[gotRow * V + v]! - w);
    if (!(d <= maxDiff)) maxDiff = Number.isNaN(d) ? Infinity : Math.max(maxDiff, d);
    mean += w;
    sq += w * w;
  }
  mean /= V;
  return { maxDiff, std: Math.sqrt(sq / V - mean * mean) };
}

function argmax(x: ArrayLike<number>, off = 0, n = x.length): number {
  let best = 0;
  for (let i = 1; i < n; i++) if (x[off + i]! > x[off + best]!) best = i;
  return best;
}

/** Asserts every row of `got` (rows in `rows` order) against `want`, printing the worst case. */
function check(label: string, got: Float32Array, want: Float64Array[], tol: number, checkTop1 = false): void {
  let worst = 0;
  let worstStd = 0;
  want.forEach((w, r) => {
    const c = compare(got, r, w);
    assert.ok(c.std > 1, `${label}: row ${r} logit std ${c.std.toFixed(3)} <= 1, logits too close to uniform to test anything`);
    if (c.maxDiff / c.std > worst / (worstStd || 1)) {
      worst = c.maxDiff;
      worstStd = c.std;
    }
    assert.ok(c.maxDiff <= tol * c.std, `${label}: row ${r} max |diff| ${c.maxDiff.toExponential(3)} > ${tol} x std ${c.std.toFixed(3)}`);
    if (checkTop1) assert.equal(argmax(got, r * w.length, w.length), argmax(w), `${label}: row ${r} top-1 differs`);
  });
  console.log(`  ${label}: max |diff| ${worst.toExponential(3)}, logit std ${worstStd.toFixed(3)} (ratio ${(worst / worstStd).toExponential(2)}, tolerance ${tol})`);
}

const range = (n: number, from = 0) => Int32Array.from({ length: n }, (_, i) => from + i);

for (const fileType of ['F32', 'BF16', 'Q8_0', 'Q4_K_M']) {
  describe(`engine vs float64 reference, synth tiny ${fileType}`, { skip }, () => {
    let dir: string;
    let path: string;
    let ref: ReferenceModel;
    let model: LoadedModel;
    // Reference logits per position: rounded activations (tight) and exact (per-dtype tolerance).
    let refA: Float64Array[];
    let refB: Float64Array[];
    let exactA: Float64Array[];

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'mixtile-ref-'));
      path = join(dir, `tiny-${fileType}.gguf`);
      await synthModel({ preset: 'tiny', out: path, fileType, seed: 11 });
      ref = await ReferenceModel.load(path);
      refA = ref.forward(PROMPT_A, { roundActivations: true });
      refB = ref.forward(PROMPT_B, { roundActivations: true });
      exactA = ref.forward(PROMPT_A);
      model = await loadModel(path, { ctxSize: 32, nSeq: 2, kvType: 'f32' });
    });
    after(() => {
      model?.dispose();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    test('prefill in one batch, logits of every position', () => {
      model.kv.clear(0);
      const n = PROMPT_A.length;
      const logits = model.forward({ tokens: Int32Array.from(PROMPT_A), positions: range(n), seqIds: new Int32Array(n), logitsFor: range(n) });
      assert.equal(logits.length, n * model.config.vocab);
      check(`${fileType} prefill vs rounded reference`, logits, refA, TOL_ROUNDED, true);
      check(`${fileType} prefill vs exact reference`, logits, exactA, TOL_EXACT[fileType]!);
      assert.equal(model.kv.length(0), n);
    });

    test('token-by-token decode', () => {
      model.kv.clear(0);
      const got = new Float32Array(PROMPT_A.length * model.config.vocab);
      PROMPT_A.forEach((t, p) => {
        const l = model.forward({ tokens: Int32Array.of(t), positions: Int32Array.of(p), seqIds: Int32Array.of(0), logitsFor: Int32Array.of(0) });
        got.set(l, p * model.config.vocab);
      });
      check(`${fileType} decode vs rounded reference`, got, refA, TOL_ROUNDED, true);
    });

    test('two sequences interleaved in one batch, then continued separately', () => {
      model.kv.clear(0);
      model.kv.clear(1);
      // a0 b0 a1 b1 ... for the first 4 tokens of each, logits for every token.
      const tokens: number[] = [];
      const positions: number[] = [];
      const seqIds: number[] = [];
      for (let p = 0; p < 4; p++) {
        tokens.push(PROMPT_A[p]!, PROMPT_B[p]!);
        positions.push(p, p);
        seqIds.push(0, 1);
      }
      const n = tokens.length;
      const logits = model.forward({ tokens: Int32Array.from(tokens), positions: Int32Array.from(positions), seqIds: Int32Array.from(seqIds), logitsFor: range(n) });
      const want = seqIds.map((s, i) => (s === 0 ? refA : refB)[positions[i]!]!);
      check(`${fileType} interleaved vs rounded reference`, logits, want, TOL_ROUNDED, true);
      // Continue: the rest of A and of B in one batch, logits only for each sequence's last token.
      const restA = PROMPT_A.slice(4);
      const restB = PROMPT_B.slice(4);
      const t2 = [...restA, ...restB];
      const l2 = model.forward({
        tokens: Int32Array.from(t2),
        positions: Int32Array.from([...restA.map((_, i) => 4 + i), ...restB.map((_, i) => 4 + i)]),
        seqIds: Int32Array.from([...restA.map(() => 0), ...restB.map(() => 1)]),
        logitsFor: Int32Array.of(t2.length - 1, restA.length - 1),
      });
      check(`${fileType} continued (B last, A last)`, l2, [refB[PROMPT_B.length - 1]!, refA[PROMPT_A.length - 1]!], TOL_ROUNDED, true);
      assert.equal(model.kv.length(0), PROMPT_A.length);
      assert.equal(model.kv.length(1), PROMPT_B.length);
    });

    test('KV slot copy, truncate and rejected positions', () => {
      model.kv.clear(0);
      model.kv.clear(1);
      const n = PROMPT_A.length;
      model.forward({ tokens: Int32Array.from(PROMPT_A.slice(0, 5)), positions: range(5), seqIds: new Int32Array(5), logitsFor: Int32Array.of(4) });
      // Share A's first 3 positions into slot 1, then decode A's tokens 3.. in slot 1.
      model.kv.copy(0, 1, 3);
      assert.equal(model.kv.length(1), 3);
      const l = model.forward({ tokens: Int32Array.from(PROMPT_A.slice(3)), positions: range(n - 3, 3), seqIds: Int32Array.from({ length: n - 3 }, () => 1), logitsFor: range(n - 3) });
      check(`${fileType} after kv.copy`, l, refA.slice(3), TOL_ROUNDED, true);
      // Rewind slot 0 to 2 positions and redo position 2 onwards.
      model.kv.truncate(0, 2);
      assert.equal(model.kv.length(0), 2);
      const l3 = model.forward({ tokens: Int32Array.from(PROMPT_A.slice(2)), positions: range(n - 2, 2), seqIds: new Int32Array(n - 2), logitsFor: Int32Array.of(n - 3) });
      check(`${fileType} after kv.truncate`, l3, [refA[n - 1]!], TOL_ROUNDED, true);
      // A position that does not continue the slot is refused and changes nothing.
      assert.throws(
        () => model.forward({ tokens: Int32Array.of(1), positions: Int32Array.of(n + 1), seqIds: Int32Array.of(0), logitsFor: Int32Array.of(0) }),
        /position 8, expected 7/,
      );
      assert.throws(() => model.forward({ tokens: Int32Array.of(999_999), positions: Int32Array.of(n), seqIds: Int32Array.of(0), logitsFor: Int32Array.of(0) }), /outside the vocabulary/);
      assert.equal(model.kv.length(0), n);
    });

    test('prefill in ubatch chunks of 3, and with an f16 KV cache', async () => {
      const n = PROMPT_A.length;
      const batch = { tokens: Int32Array.from(PROMPT_A), positions: range(n), seqIds: new Int32Array(n), logitsFor: Int32Array.from([6, 0, 3, 4]) };
      const chunked = await loadModel(path, { ctxSize: 16, ubatch: 3, kvType: 'f32' });
      try {
        check(`${fileType} ubatch 3 (rows 6, 0, 3, 4)`, chunked.forward(batch), [6, 0, 3, 4].map((p) => refA[p]!), TOL_ROUNDED, true);
      } finally {
        chunked.dispose();
      }
      const f16 = await loadModel(path, { ctxSize: 16 });
      try {
        check(`${fileType} f16 KV vs exact reference`, f16.forward(batch), [6, 0, 3, 4].map((p) => exactA[p]!), TOL_F16_KV[fileType]!);
      } finally {
        f16.dispose();
      }
    });
  });
}
