// Fused experts: every weight type x every ISA level, against a float64 reference forward over
// the TS-decoded weights (scalar) and against scalar (other levels). Awkward on purpose: 1/3/17
// tokens, experts that receive no token, and routing ties.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GgmlType } from '../../src/formats/ggml-types.ts';
import { expertsLoad, moeForward, moeForwardRouted, moeRoute } from '../../src/native/experts.ts';
import { weightFromBytes } from '../../src/native/tensor.ts';
import { actRelError, blockSize, isaCases, randomF32, randomWeight, rng, typeName, WEIGHT_TYPES, withIsa, worstRatio } from './helpers.ts';

const N_EXPERT = 6;
const TOP_K = 2;
const TOKENS = [1, 3, 17, 129];

// hidden and ffn are rows of gate/up and down respectively, so both must be whole blocks. The
// float types also run at 256 x 256, where activation rows are a multiple of 512 bytes and the
// experts pad their stride (act_row_stride).
function dimsFor(t: GgmlType): { hidden: number; ffn: number }[] {
  if (blockSize(t) === 256) return [{ hidden: 256, ffn: 512 }];
  if (t === GgmlType.Q8_0) return [{ hidden: 96, ffn: 160 }];
  return [
    { hidden: 88, ffn: 40 },
    { hidden: 256, ffn: 256 },
  ];
}

/** Routing that leaves experts 1 and 4 without tokens and varies weights. */
function routing(n: number, seed: number): { ids: Int32Array; weights: Float32Array } {
  const r = rng(seed);
  const used = [0, 2, 3, 5];
  const ids = new Int32Array(n * TOP_K);
  const weights = new Float32Array(n * TOP_K);
  for (let t = 0; t < n; t++) {
    const a = used[Math.floor(r() * 4)];
    const b = used[(used.indexOf(a) + 1 + Math.floor(r() * 3)) % 4];
    ids.set([a, b], t * TOP_K);
    const w0 = 0.2 + 0.6 * r();
    weights.set([w0, 1 - w0], t * TOP_K);
  }
  return { ids, weights };
}

const silu = (v: number): number => v / (1 + Math.exp(-v));

const { run, missing } = isaCases();

for (const type of WEIGHT_TYPES) for (const { hidden, ffn } of dimsFor(type)) {
  const gate = randomWeight(type, [hidden, ffn, N_EXPERT], 1000 + type);
  const up = randomWeight(type, [hidden, ffn, N_EXPERT], 2000 + type);
  const down = randomWeight(type, [ffn, hidden, N_EXPERT], 3000 + type);
  const router = randomWeight(GgmlType.F32, [hidden, N_EXPERT], 4000 + type);
  const ex = expertsLoad({ gate: gate.w, up: up.w, down: down.w, router: router.w });
  for (const w of [gate.w, up.w, down.w, router.w]) w.dispose(); // the experts handle keeps them alive

  for (const n of TOKENS) {
    const x = randomF32(n * hidden, 50 + n);
    const { ids, weights } = routing(n, 60 + n);
    // float64 reference with the same routing; the bound scales the activation error model by the
    // magnitudes the products go through (both matmuls quantize their input).
    const ref = new Float64Array(n * hidden);
    const mag = new Float64Array(n * hidden);
    for (let t = 0; t < n; t++) {
      for (let j = 0; j < TOP_K; j++) {
        const e = ids[t * TOP_K + j];
        const wt = weights[t * TOP_K + j];
        const h = new Float64Array(ffn);
        let xAbsMax = 0;
        for (let i = 0; i < hidden; i++) xAbsMax = Math.max(xAbsMax, Math.abs(x[t * hidden + i]));
        const hMag = new Float64Array(ffn);
        for (let f = 0; f < ffn; f++) {
          let g = 0;
          let u = 0;
          let gm = 0;
          let um = 0;
          const off = (e * ffn + f) * hidden;
          for (let i = 0; i < hidden; i++) {
            const xi = x[t * hidden + i];
            g += gate.values[off + i] * xi;
            u += up.values[off + i] * xi;
            gm += Math.abs(gate.values[off + i]);
            um += Math.abs(up.values[off + i]);
          }
          h[f] = silu(g) * u;
          hMag[f] = xAbsMax * (1.1 * Math.abs(u) * gm + Math.abs(g) * um); // |dh| / actRelError
        }
        let hAbsMax = 0;
        for (let f = 0; f < ffn; f++) hAbsMax = Math.max(hAbsMax, Math.abs(h[f]));
        for (let o = 0; o < hidden; o++) {
          let s = 0;
          let m = 0;
          const off = (e * hidden + o) * ffn;
          for (let f = 0; f < ffn; f++) {
            s += down.values[off + f] * h[f];
            m += Math.abs(down.values[off + f]) * (hAbsMax + hMag[f]);
          }
          ref[t * hidden + o] += wt * s;
          mag[t * hidden + o] += wt * m;
        }
      }
    }
    let scalar: Float32Array | undefined;
    for (const isa of run) {
      test(`experts ${typeName(type)} hidden=${hidden} ffn=${ffn} e=${N_EXPERT} k=${TOP_K} n=${n} isa=${isa}`, () => {
        const y = new Float32Array(n * hidden).fill(Number.NaN);
        withIsa(isa, () => moeForwardRouted(ex, x, n, ids, weights, TOP_K, y));
        if (isa === 'scalar') {
          const { ratio, at } = worstRatio(y, ref, (i) => actRelError(type) * mag[i] + 1e-5);
          assert.ok(ratio <= 1, `scalar vs float64: output ${at}: ${y[at]} vs ${ref[at]} (${ratio.toFixed(2)} x bound)`);
          scalar = y;
        } else {
          assert.ok(scalar, 'scalar ran first');
          // Fast paths may quantize h differently by a rounding step: allow a few Q8 steps of it.
          const tol = type === GgmlType.F32 || type === GgmlType.F16 ? 1e-4 : 0.05 * actRelError(type);
          const { ratio, at } = worstRatio(y, scalar, (i) => tol * mag[i] + 1e-5);
          assert.ok(ratio <= 1, `${isa} vs scalar: output ${at}: ${y[at]} vs ${scalar[at]} (${ratio.toFixed(2)} x bound)`);
        }
      });
    }
  }
  test(`experts ${typeName(type)} hidden=${hidden} ffn=${ffn}: moeForward = moeRoute + moeForwardRouted`, () => {
    const n = 5;
    const x = randomF32(n * hidden, 77);
    const ids = new Int32Array(n * 3);
    const w = new Float32Array(n * 3);
    moeRoute(ex, x, n, { topK: 3, normTopKProb: true }, ids, w);
    for (let t = 0; t < n; t++) {
      const s = w[t * 3] + w[t * 3 + 1] + w[t * 3 + 2];
      assert.ok(Math.abs(s - 1) < 1e-5, `token ${t}: renormalised weights sum to ${s}`);
      assert.ok(w[t * 3] >= w[t * 3 + 1] && w[t * 3 + 1] >= w[t * 3 + 2], 'weights sorted descending');
    }
    const a = new Float32Array(n * hidden);
    const b = new Float32Array(n * hidden);
    moeForward(ex, x, n, { topK: 3, normTopKProb: true }, a);
    moeForwardRouted(ex, x, n, ids, w, 3, b);
    assert.deepEqual(a, b);
  });
}

for (const isa of missing) {
  test(`experts isa=${isa}`, { skip: `this CPU lacks ${isa}` }, () => {});
}

test('router: softmax probabilities, ties go to the lower expert id, norm_topk_prob off keeps raw probabilities', () => {
  const hidden = 32;
  // Experts 1 and 3 have identical router rows (a tie), expert 0 is lower, 2 is higher.
  const rows = new Float32Array(4 * hidden);
  for (let i = 0; i < hidden; i++) {
    rows[0 * hidden + i] = 0.1;
    rows[1 * hidden + i] = 0.5;
    rows[2 * hidden + i] = 0.9;
    rows[3 * hidden + i] = 0.5;
  }
  const f32 = (a: Float32Array) => new Uint8Array(a.buffer.slice(0));
  const z = new Float32Array(hidden * 32 * 4);
  const ex = expertsLoad({
    gate: weightFromBytes(f32(z), GgmlType.F32, [hidden, 32, 4]),
    up: weightFromBytes(f32(z), GgmlType.F32, [hidden, 32, 4]),
    down: weightFromBytes(f32(new Float32Array(32 * hidden * 4)), GgmlType.F32, [32, hidden, 4]),
    router: weightFromBytes(f32(rows), GgmlType.F32, [hidden, 4]),
  });
  const x = new Float32Array(hidden).fill(1 / hidden);
  const ids = new Int32Array(2);
  const w = new Float32Array(2);
  moeRoute(ex, x, 1, { topK: 2, normTopKProb: false }, ids, w);
  assert.deepEqual([...ids], [2, 1]);
  const logits = [0.1, 0.5, 0.9, 0.5];
  const zsum = logits.reduce((s, l) => s + Math.exp(l), 0);
  assert.ok(Math.abs(w[0] - Math.exp(0.9) / zsum) < 1e-6);
  assert.ok(Math.abs(w[1] - Math.exp(0.5) / zsum) < 1e-6);
  const y = new Float32Array(hidden).fill(Number.NaN);
  moeForward(ex, x, 1, { topK: 2, normTopKProb: true }, y);
  assert.ok(y.every((v) => v === 0), 'zero experts give zero output (and overwrite out)');
});

test('experts reject bad shapes, ids out of range, short arrays and disposed handles', () => {
  const g = randomWeight(GgmlType.F32, [32, 16, 3], 1);
  const u = randomWeight(GgmlType.F32, [32, 16, 3], 2);
  const d = randomWeight(GgmlType.F32, [16, 32, 3], 3);
  const r = randomWeight(GgmlType.F32, [32, 3], 4);
  assert.throws(() => expertsLoad({ gate: g.w, up: u.w, down: g.w, router: r.w }), /expected gate\/up/);
  assert.throws(() => expertsLoad({ gate: g.w, up: u.w, down: d.w, router: g.w }), /router must be/);
  const ex = expertsLoad({ gate: g.w, up: u.w, down: d.w, router: r.w });
  const x = new Float32Array(64);
  const y = new Float32Array(64);
  assert.throws(() => moeForwardRouted(ex, x, 2, new Int32Array([0, 3]), new Float32Array(2), 1, y), /expert id 3 at token 1/);
  assert.throws(() => moeForwardRouted(ex, x, 2, new Int32Array([0]), new Float32Array(2), 1, y), /ids: expected at least 2/);
  assert.throws(() => moeForward(ex, x, 3, { topK: 1, normTopKProb: true }, y), /x: expected at least 96/);
  assert.throws(() => moeForward(ex, x, 2, { topK: 4, normTopKProb: true }, y), /topK/);
  assert.throws(() => moeForward(ex, x, 2, { topK: 0, normTopKProb: true }, y), /topK/);
  ex.dispose();
  ex.dispose();
  assert.throws(() => moeForward(ex, x, 2, { topK: 1, normTopKProb: true }, y), /disposed/);
});
