// AMX experts kernels through the addon (native/src/cpu/amx): AMX-BF16 and AMX-INT8 (groups 64, 32),
// each run all-AMX, all-AVX-512 (same packed panels) and with the default per-expert switch,
// against a float64 forward over the TS-decoded weights. Awkward sizes: 1/3/17/129 tokens on one
// expert, K and N off the tile sizes, an expert with no tokens. Skips where AMX is absent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GgmlType } from '../../src/formats/ggml-types.ts';
import { addon } from '../../src/native/addon.ts';
import { expertsLoad, moeForwardRouted } from '../../src/native/experts.ts';
import { isaInfo } from '../../src/native/isa.ts';
import type { NativeHandle } from '../../src/native/tensor.ts';
import { randomF32, randomWeight, rng, typeName } from './helpers.ts';

interface AmxInfo {
  available: boolean;
  reason: string;
  flags: string;
  minTokensBf16: number;
  minTokensInt8: number;
  minPairsPerExpertBf16: number;
  minPairsPerExpertInt8: number;
  minTokensQ4k: number;
  minPairsPerExpertQ4k: number;
  minCallTokensOverride: number;
}
const info = addon().amxInfo() as AmxInfo;
const skip = info.available ? false : info.reason || `no AMX on this CPU (flags: ${info.flags})`;

const N_EXPERT = 5;
const TOP_K = 2;
const TOKENS = [1, 3, 17, 129];
// Output error bound, as a fraction of the RMS of the reference output row. BF16/INT8 rounding of
// weights, x and h is amplified where gate/up sums cancel, so single outputs reach a few percent;
// an indexing error is of the order of the RMS itself.
const TOL = { bf16: 0.08, int8: 0.2 } as const;
// Whole-tensor relative L2 error bound.
const REL_L2 = { bf16: 6e-3, int8: 4e-2 } as const;

// Source types and shapes (hidden, ffn are whole blocks; off the 32/64 tile sizes where the block allows).
const SOURCES: { type: GgmlType; hidden: number; ffn: number }[] = [
  { type: GgmlType.BF16, hidden: 200, ffn: 72 },
  { type: GgmlType.F16, hidden: 136, ffn: 40 },
  { type: GgmlType.Q8_0, hidden: 160, ffn: 96 },
  { type: GgmlType.Q4_K, hidden: 256, ffn: 256 },
  { type: GgmlType.Q6_K, hidden: 256, ffn: 256 },
];

/** Expert 0 gets every token; the other slot picks among 1..N-2; expert N-1 gets none. */
function routing(n: number, seed: number): { ids: Int32Array; weights: Float32Array } {
  const r = rng(seed);
  const ids = new Int32Array(n * TOP_K);
  const weights = new Float32Array(n * TOP_K);
  for (let t = 0; t < n; t++) {
    ids.set([0, 1 + Math.floor(r() * (N_EXPERT - 2))], t * TOP_K);
    weights.set([0.2 + 0.6 * r(), 0.2 + 0.6 * r()], t * TOP_K);
  }
  return { ids, weights };
}

const silu = (v: number): number => v / (1 + Math.exp(-v));

function reference(
  g: Float32Array,
  u: Float32Array,
  d: Float32Array,
  hidden: number,
  ffn: number,
  x: Float32Array,
  n: number,
  ids: Int32Array,
  weights: Float32Array,
): Float64Array {
  const y = new Float64Array(n * hidden);
  const h = new Float64Array(ffn);
  for (let t = 0; t < n; t++) {
    for (let j = 0; j < TOP_K; j++) {
      const e = ids[t * TOP_K + j];
      for (let f = 0; f < ffn; f++) {
        let gs = 0;
        let us = 0;
        const off = (e * ffn + f) * hidden;
        for (let i = 0; i < hidden; i++) {
          gs += g[off + i] * x[t * hidden + i];
          us += u[off + i] * x[t * hidden + i];
        }
        h[f] = silu(gs) * us;
      }
      for (let o = 0; o < hidden; o++) {
        let s = 0;
        const off = (e * hidden + o) * ffn;
        for (let f = 0; f < ffn; f++) s += d[off + f] * h[f];
        y[t * hidden + o] += weights[t * TOP_K + j] * s;
      }
    }
  }
  return y;
}

/** ||y - ref|| / ||ref||. */
function relL2(y: Float32Array, ref: Float64Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < y.length; i++) {
    num += (y[i] - ref[i]) ** 2;
    den += ref[i] ** 2;
  }
  return Math.sqrt(num / den);
}

/** Checks every output against the reference (bound: tol x RMS of its row) and the whole tensor's L2 error. */
function check(y: Float32Array, ref: Float64Array, hidden: number, tol: number, relL2: number, what: string): void {
  let num = 0;
  let den = 0;
  for (let t = 0; t < y.length / hidden; t++) {
    let ss = 0;
    for (let o = 0; o < hidden; o++) ss += ref[t * hidden + o] ** 2;
    const rms = Math.sqrt(ss / hidden) + 1e-6;
    for (let o = 0; o < hidden; o++) {
      const i = t * hidden + o;
      const err = Math.abs(y[i] - ref[i]);
      assert.ok(err <= tol * rms, `${what}: output [${t}, ${o}]: ${y[i]} vs ${ref[i]} (row rms ${rms.toExponential(2)})`);
      num += err * err;
      den += ref[i] * ref[i];
    }
  }
  const rel = Math.sqrt(num / den);
  assert.ok(rel <= relL2, `${what}: relative L2 error ${rel.toExponential(2)} > ${relL2}`);
}

for (const { type, hidden, ffn } of SOURCES) {
  // INT8 scale groups: 64 (the default: one TDPBSSD K step) and 32 (two half-K products per step);
  // INT8 gate+up with BF16 down panels (h in BF16).
  for (const [dtype, group, downBf16] of [
    ['bf16', 64, false],
    ['int8', 64, false],
    ['int8', 32, false],
    ['int8', 64, true],
  ] as const) {
    const name = dtype === 'int8' ? `int8 g${group}${downBf16 ? ' + bf16 down' : ''}` : dtype;
    test(`amx ${name} from ${typeName(type)} hidden=${hidden} ffn=${ffn} e=${N_EXPERT} k=${TOP_K}`, { skip }, () => {
      const gate = randomWeight(type, [hidden, ffn, N_EXPERT], 100 + type);
      const up = randomWeight(type, [hidden, ffn, N_EXPERT], 200 + type);
      const down = randomWeight(type, [ffn, hidden, N_EXPERT], 300 + type);
      const h = addon().amxExpertsPack(gate.w.handle, up.w.handle, down.w.handle, dtype, group, downBf16) as NativeHandle;
      for (const w of [gate.w, up.w, down.w]) w.dispose(); // packing copied them
      for (const n of TOKENS) {
        const x = randomF32(n * hidden, 50 + n);
        const { ids, weights } = routing(n, 60 + n);
        const ref = reference(gate.values, up.values, down.values, hidden, ffn, x, n, ids, weights);
        for (const [path, minTokens] of [['amx', 0], ['avx512', 2 ** 30], ['switch', -1]] as const) {
          const y = new Float32Array(n * hidden).fill(Number.NaN);
          addon().amxExpertsForward(h, x, n, ids, weights, TOP_K, y, minTokens);
          check(y, ref, hidden, TOL[dtype], REL_L2[dtype], `n=${n} path=${path}`);
        }
      }
    });
  }
}

const tableSkip = skip || (isaInfo().active !== 'amx' ? `the experts table runs AMX entries only at ISA amx (active: ${isaInfo().active})` : false);
test('amx entries in the experts dispatch table: BF16 weights -> AMXBF16, Q4_K -> AMXInt8 from the call threshold', { skip: tableSkip }, () => {
  for (const [type, name, hidden, ffn] of [
    [GgmlType.BF16, 'AMXBF16', 200, 72],
    [GgmlType.Q4_K, 'AMXInt8', 256, 256],
  ] as const) {
    const gate = randomWeight(type, [hidden, ffn, N_EXPERT], 1);
    const up = randomWeight(type, [hidden, ffn, N_EXPERT], 2);
    const down = randomWeight(type, [ffn, hidden, N_EXPERT], 3);
    const router = randomWeight(GgmlType.F32, [hidden, N_EXPERT], 4);
    const ex = expertsLoad({ gate: gate.w, up: up.w, down: down.w, router: router.w });
    // Calls below the threshold (decode) go to the generic kernels over the source weights.
    const pairs = name === 'AMXBF16' ? info.minPairsPerExpertBf16 : info.minPairsPerExpertInt8;
    const minCall = info.minCallTokensOverride >= 0 ? info.minCallTokensOverride : Math.ceil((pairs * N_EXPERT) / TOP_K);
    const n = Math.max(17, minCall);
    assert.equal(ex.kernelName(n, TOP_K), name);
    if (minCall > 1) assert.equal(ex.kernelName(minCall - 1, TOP_K), 'generic');
    const x = randomF32(n * hidden, 5);
    const { ids, weights } = routing(n, 6);
    const y = new Float32Array(n * hidden).fill(Number.NaN);
    moeForwardRouted(ex, x, n, ids, weights, TOP_K, y);
    const ref = reference(gate.values, up.values, down.values, hidden, ffn, x, n, ids, weights);
    const dt = name === 'AMXBF16' ? 'bf16' : 'int8';
    check(y, ref, hidden, TOL[dt], REL_L2[dt], `${name} through moeForwardRouted`);
    ex.dispose();
  }
});

for (const [name, value, message, backend] of [
  ['MIXTILE_AMX_INT8_GROUP', '48', /MIXTILE_AMX_INT8_GROUP must be 32, 64, 128 or 256, got "48"/, ''],
  ['MIXTILE_AMX_INT4_ACT_GROUP', '512', /MIXTILE_AMX_INT4_ACT_GROUP must be 32, 64, 128 or 256, got "512"/, 'AMXInt4'],
  ['MIXTILE_AMX_INT8_DOWN', 'fp8', /MIXTILE_AMX_INT8_DOWN must be int8 or bf16, got "fp8"/, ''],
] as const) {
  test(`${name}: a bad value fails the load with the allowed values`, { skip: tableSkip }, () => {
    const [hidden, ffn] = [256, 256];
    const w = [1, 2, 3].map((seed, i) =>
      randomWeight(GgmlType.Q4_K, i < 2 ? [hidden, ffn, N_EXPERT] : [ffn, hidden, N_EXPERT], seed),
    );
    const router = randomWeight(GgmlType.F32, [hidden, N_EXPERT], 4);
    process.env[name] = value;
    if (backend) process.env.MIXTILE_AMX_BACKEND = backend;
    try {
      assert.throws(() => expertsLoad({ gate: w[0]!.w, up: w[1]!.w, down: w[2]!.w, router: router.w }), message);
    } finally {
      delete process.env[name];
      delete process.env.MIXTILE_AMX_BACKEND;
    }
  });
}

test('MIXTILE_AMX_INT8_GROUP=32 and MIXTILE_AMX_INT8_DOWN=bf16 through the experts table', { skip: tableSkip }, () => {
  const [hidden, ffn] = [256, 256];
  const gate = randomWeight(GgmlType.Q4_K, [hidden, ffn, N_EXPERT], 11);
  const up = randomWeight(GgmlType.Q4_K, [hidden, ffn, N_EXPERT], 12);
  const down = randomWeight(GgmlType.Q4_K, [ffn, hidden, N_EXPERT], 13);
  const router = randomWeight(GgmlType.F32, [hidden, N_EXPERT], 14);
  const n = Math.max(17, info.minCallTokensOverride >= 0 ? info.minCallTokensOverride : Math.ceil((info.minPairsPerExpertInt8 * N_EXPERT) / TOP_K));
  const x = randomF32(n * hidden, 15);
  const { ids, weights } = routing(n, 16);
  const ref = reference(gate.values, up.values, down.values, hidden, ffn, x, n, ids, weights);
  for (const [g, dn] of [['32', 'int8'], ['64', 'bf16'], ['32', 'bf16']] as const) {
    process.env.MIXTILE_AMX_INT8_GROUP = g;
    process.env.MIXTILE_AMX_INT8_DOWN = dn;
    try {
      const ex = expertsLoad({ gate: gate.w, up: up.w, down: down.w, router: router.w });
      assert.equal(ex.kernelName(n, TOP_K), 'AMXInt8');
      const y = new Float32Array(n * hidden).fill(Number.NaN);
      moeForwardRouted(ex, x, n, ids, weights, TOP_K, y);
      check(y, ref, hidden, TOL.int8, REL_L2.int8, `group ${g}, down ${dn}`);
      ex.dispose();
    } finally {
      delete process.env.MIXTILE_AMX_INT8_GROUP;
      delete process.env.MIXTILE_AMX_INT8_DOWN;
    }
  }
});

test('amxInfo reports availability, the reason when off, and the switch point', () => {
  assert.equal(typeof info.available, 'boolean');
  assert.ok(info.minTokensBf16 >= 0 && info.minTokensInt8 >= 0);
  assert.ok(info.minPairsPerExpertBf16 > 0 && info.minPairsPerExpertInt8 > 0 && info.minPairsPerExpertQ4k > 0);
  assert.ok(info.minTokensQ4k >= 0);
  if (!info.available) assert.match(info.reason, /AMX|amx/);
});

// Q4K panels (backend AMXInt4): the Q4_K weights kept exactly, so against the float64 forward over
// the decoded weights the error is the INT8 activations' (x and h per 32) alone; down Q4_K (Q4K
// panels) or Q6_K (INT8 group-32 panels, as Q4_K_M files have it in some layers).
// Activation group 32 (per-32 scale pass) or 256 (sub-block scales folded into the integer
// products, one scale per 256 as Q8_K: a coarser activation rounding, a looser bound).
const Q4K = { tol: 0.1, relL2: 1.5e-2 } as const;
const Q4K_BOUND = { 32: Q4K, 256: { tol: 0.15, relL2: 3e-2 } } as const;
for (const [downType, hidden, ffn, actGroup] of [
  [GgmlType.Q4_K, 512, 256, 32],
  [GgmlType.Q6_K, 256, 512, 32],
  [GgmlType.Q4_K, 512, 256, 256],
  [GgmlType.Q6_K, 256, 512, 256],
] as const) {
  test(`amx q4k (activations per ${actGroup}) from Q4_K, down ${typeName(downType)} hidden=${hidden} ffn=${ffn}: paths agree bit for bit, within the INT8 activation bound`, { skip }, () => {
    const gate = randomWeight(GgmlType.Q4_K, [hidden, ffn, N_EXPERT], 401);
    const up = randomWeight(GgmlType.Q4_K, [hidden, ffn, N_EXPERT], 402);
    const down = randomWeight(downType, [ffn, hidden, N_EXPERT], 403);
    const h = addon().amxExpertsPack(gate.w.handle, up.w.handle, down.w.handle, 'q4k', actGroup, false) as NativeHandle;
    for (const w of [gate.w, up.w, down.w]) w.dispose();
    for (const n of TOKENS) {
      const x = randomF32(n * hidden, 70 + n);
      const { ids, weights } = routing(n, 80 + n);
      const ref = reference(gate.values, up.values, down.values, hidden, ffn, x, n, ids, weights);
      let yAmx: Float32Array | undefined;
      for (const [path, minTokens] of [['amx', 0], ['avx512', 2 ** 30], ['switch', -1]] as const) {
        const y = new Float32Array(n * hidden).fill(Number.NaN);
        addon().amxExpertsForward(h, x, n, ids, weights, TOP_K, y, minTokens);
        check(y, ref, hidden, Q4K_BOUND[actGroup].tol, Q4K_BOUND[actGroup].relL2, `n=${n} path=${path}`);
        if (yAmx) assert.deepEqual(y, yAmx, `n=${n}: the ${path} path's outputs differ from the AMX path's`);
        else yAmx = y;
      }
    }
  });
}

test('amxExpertsPack q4k refuses gate/up that are not Q4_K, with the reason', { skip }, () => {
  const gate = randomWeight(GgmlType.Q8_0, [256, 256, N_EXPERT], 1);
  const up = randomWeight(GgmlType.Q8_0, [256, 256, N_EXPERT], 2);
  const down = randomWeight(GgmlType.Q4_K, [256, 256, N_EXPERT], 3);
  assert.throws(() => addon().amxExpertsPack(gate.w.handle, up.w.handle, down.w.handle, 'q4k', 32, false), /q4k.*needs Q4_K gate and up/);
  for (const w of [gate.w, up.w, down.w]) w.dispose();
});

test('AMXInt4 through the experts table: Q4_K -> AMXInt4 (close to the generic Q4_K x Q8_K kernel), Q8_0 -> AMXInt8', { skip: tableSkip }, () => {
  const [hidden, ffn] = [512, 256];
  const router = randomWeight(GgmlType.F32, [hidden, N_EXPERT], 24);
  const n = Math.max(17, info.minCallTokensOverride >= 0 ? info.minCallTokensOverride : Math.ceil((info.minPairsPerExpertInt8 * N_EXPERT) / TOP_K));
  const x = randomF32(n * hidden, 25);
  const { ids, weights } = routing(n, 26);
  for (const [type, name] of [
    [GgmlType.Q4_K, 'AMXInt4'],
    [GgmlType.Q8_0, 'AMXInt8'],
  ] as const) {
    const gate = randomWeight(type, [hidden, ffn, N_EXPERT], 21);
    const up = randomWeight(type, [hidden, ffn, N_EXPERT], 22);
    const down = randomWeight(GgmlType.Q4_K, [ffn, hidden, N_EXPERT], 23);
    const ref = reference(gate.values, up.values, down.values, hidden, ffn, x, n, ids, weights);
    const generic = new Float32Array(n * hidden);
    process.env.MIXTILE_AMX_BACKEND = 'off';
    try {
      const ex = expertsLoad({ gate: gate.w, up: up.w, down: down.w, router: router.w });
      assert.equal(ex.kernelName(n, TOP_K), 'generic');
      moeForwardRouted(ex, x, n, ids, weights, TOP_K, generic);
      ex.dispose();
      process.env.MIXTILE_AMX_BACKEND = 'AMXInt4';
      const ex4 = expertsLoad({ gate: gate.w, up: up.w, down: down.w, router: router.w });
      assert.equal(ex4.kernelName(n, TOP_K), name);
      // Below the entry's call threshold (decode) the generic kernels read the source weights.
      const pairs = name === 'AMXInt4' ? info.minPairsPerExpertQ4k : info.minPairsPerExpertInt8;
      const minCall = info.minCallTokensOverride >= 0 ? info.minCallTokensOverride : Math.ceil((pairs * N_EXPERT) / TOP_K);
      if (minCall > 1) assert.equal(ex4.kernelName(minCall - 1, TOP_K), 'generic');
      const y = new Float32Array(n * hidden).fill(Number.NaN);
      moeForwardRouted(ex4, x, n, ids, weights, TOP_K, y);
      ex4.dispose();
      if (name === 'AMXInt4') {
        check(y, ref, hidden, Q4K.tol, Q4K.relL2, `${name} through moeForwardRouted`);
        // The generic kernel has the same weights and integer products but quantizes x and h per 256
        // (Q8_K) instead of per 32: its error is independent of this one and no smaller (here 1.5%
        // vs 1.0% of float64, 1.7% between the two). An indexing error would be ~100%.
        const g64 = Float64Array.from(generic);
        check(y, g64, hidden, Q4K.tol, 2.5e-2, `${name} vs the generic Q4_K kernel`);
        assert.ok(relL2(y, ref) <= relL2(generic, ref), `${name}: per-32 activation scales should not lose to Q8_K's per-256`);
      } else {
        check(y, ref, hidden, TOL.int8, REL_L2.int8, `${name} (fallback) through moeForwardRouted`);
      }
    } finally {
      delete process.env.MIXTILE_AMX_BACKEND;
    }
    for (const w of [gate.w, up.w, down.w]) w.dispose();
  }
});
