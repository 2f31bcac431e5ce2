// GPU experts (streamed weights, native/src/gpu/gpu-experts*.cc) against the CPU experts kernel on a
// tiny synthetic model's layer (mixtile synth --preset tiny: hidden 256, 8 experts, top-2, ffn 256),
// with all / none / half of the experts on the GPU and with the cost model's split. Without a GPU it
// runs on the CPU stand-in of the CUDA library (libmixtile-cuda-host.so beside the addon), which is
// what CI has; MIXTILE_CUDA_LIB chooses another library.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GgmlType } from '../formats/ggml-types.ts';
import { addon } from './addon.ts';
import { expertsLoad, moeForwardRouted, type ExpertsHandle } from './experts.ts';
import { gpuExpertsCost, gpuExpertsForward, gpuExpertsRelease } from './gpu-experts.ts';
import { NativeWeight, type NativeHandle } from './tensor.ts';
import { standInUnlessSet } from '../../test/cuda/target.ts';

// Must be set before the addon first loads the CUDA library (once per process).
const skip = standInUnlessSet();

const H = 256;
const F = 256;
const E = 8;
const K = 2;

function synth(type: GgmlType, dims: number[], seed: number): NativeWeight {
  return new NativeWeight(addon().weightSynth(type, dims, seed) as NativeHandle, type, dims);
}

function layer(gateUp: GgmlType, down: GgmlType, seed: number): ExpertsHandle {
  const w = {
    gate: synth(gateUp, [H, F, E], seed),
    up: synth(gateUp, [H, F, E], seed + 1),
    down: synth(down, [F, H, E], seed + 2),
    router: synth(GgmlType.F32, [H, E], seed + 3),
  };
  const h = expertsLoad(w);
  for (const x of Object.values(w)) x.dispose();
  return h;
}

// Deterministic routing: distinct experts per token, weights summing to 1; expert 7 gets no token.
function routing(n: number): { x: Float32Array; ids: Int32Array; weights: Float32Array } {
  const x = new Float32Array(n * H).map((_, i) => Math.sin(i * 0.37) * 0.5);
  const ids = new Int32Array(n * K);
  const weights = new Float32Array(n * K);
  for (let t = 0; t < n; t++) {
    const a = (t * 5) % (E - 1);
    const b = (a + 1 + (t % 3)) % (E - 1);
    ids.set([a, b], t * K);
    weights.set([0.7 - (t % 4) * 0.1, 0.3 + (t % 4) * 0.1], t * K);
  }
  return { x, ids, weights };
}

function relErr(a: Float32Array, ref: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    if (!Number.isFinite(a[i])) return Infinity;
    num += (a[i] - ref[i]) ** 2;
    den += ref[i] ** 2;
  }
  return Math.sqrt(num / den);
}

const MASKS: Array<[string, Uint8Array]> = [
  ['all', new Uint8Array(E).fill(1)],
  ['none', new Uint8Array(E)],
  ['half', Uint8Array.from({ length: E }, (_, e) => e % 2)],
];

// Tolerances: the CPU kernel quantizes activations to 8 bits for K-quant / Q8_0 weights (~1.5% here);
// with BF16 weights both sides use bf16 activations (~2e-6 measured).
for (const [name, gu, dn, tol] of [
  ['Q4_K / Q6_K (Q4_K_M)', GgmlType.Q4_K, GgmlType.Q6_K, 3e-2],
  ['Q5_K / Q8_0', GgmlType.Q5_K, GgmlType.Q8_0, 3e-2],
  ['BF16', GgmlType.BF16, GgmlType.BF16, 1e-4],
] as const) {
  test(`gpu experts ${name}: all / none / half of the experts on the GPU match the CPU kernel`, { skip }, () => {
    const h = layer(gu, dn, 11);
    try {
      for (const n of [1, 7, 33]) {
        const { x, ids, weights } = routing(n);
        const ref = new Float32Array(n * H);
        moeForwardRouted(h, x, n, ids, weights, K, ref);
        for (const [m, mask] of MASKS) {
          const out = new Float32Array(n * H).fill(NaN);
          const r = gpuExpertsForward(h, x, n, ids, weights, K, 'split', out, mask);
          const used = new Set(ids);
          const onGpu = [...used].filter((e) => mask[e]).length;
          assert.equal(r.gpuExperts, onGpu, `${m} n=${n}: GPU experts`);
          assert.equal(r.cpuExperts, used.size - onGpu, `${m} n=${n}: CPU experts`);
          const err = relErr(out, ref);
          assert.ok(err < tol, `${name} mask ${m} n=${n}: rel err ${err}`);
          if (m === 'none') assert.equal(err, 0, 'all on the CPU must be the CPU kernel exactly');
        }
      }
    } finally {
      gpuExpertsRelease(h);
      h.dispose();
    }
  });
}

test('gpu experts: staged (MIXTILE_GPU_EXPERTS_PIN=0) equals pinned; placements gpu / cpu / split; cost model', { skip }, () => {
  const h = layer(GgmlType.Q4_K, GgmlType.Q6_K, 21);
  const n = 40;
  const { x, ids, weights } = routing(n);
  const pinnedOut = new Float32Array(n * H);
  const r1 = gpuExpertsForward(h, x, n, ids, weights, K, 'gpu', pinnedOut);
  assert.equal(r1.cpuExperts, 0);
  assert.equal(r1.gpuExperts, E - 1, 'expert 7 has no token and is not streamed');
  gpuExpertsRelease(h);
  process.env.MIXTILE_GPU_EXPERTS_PIN = '0';
  const stagedOut = new Float32Array(n * H);
  try {
    const r2 = gpuExpertsForward(h, x, n, ids, weights, K, 'gpu', stagedOut);
    assert.equal(r2.pinned, false);
    assert.match(r2.unpinnedReason ?? '', /MIXTILE_GPU_EXPERTS_PIN=0/);
  } finally {
    delete process.env.MIXTILE_GPU_EXPERTS_PIN;
    gpuExpertsRelease(h);
  }
  assert.deepEqual(stagedOut, pinnedOut);
  const cpuOut = new Float32Array(n * H);
  const r3 = gpuExpertsForward(h, x, n, ids, weights, K, 'cpu', cpuOut);
  assert.equal(r3.gpuExperts, 0);
  const cost = gpuExpertsCost(h);
  for (const k of ['pcieGbps', 'gpuBaseUs', 'cpuBaseUs'] as const) assert.ok(cost[k] > 0, `${k} measured: ${cost[k]}`);
  assert.equal(cost.source, 'measured');
  assert.ok(cost.expertBytes > 0);
  const splitOut = new Float32Array(n * H);
  const r4 = gpuExpertsForward(h, x, n, ids, weights, K, 'split', splitOut);
  assert.equal(r4.gpuExperts + r4.cpuExperts, E - 1);
  assert.ok(r4.predictedCpuMs >= 0 && r4.predictedGpuMs >= 0);
  assert.ok(relErr(splitOut, cpuOut) < 3e-2);
  gpuExpertsRelease(h);
  h.dispose();
});

test('gpu experts: bad routing is a clear error', { skip }, () => {
  const h = layer(GgmlType.Q4_K, GgmlType.Q6_K, 31);
  const { x, weights } = routing(2);
  const out = new Float32Array(2 * H);
  assert.throws(() => gpuExpertsForward(h, x, 2, new Int32Array([0, 1, 2, 9]), weights, K, 'gpu', out), /expert id 9 .* outside \[0, 8\)/);
  assert.throws(() => gpuExpertsForward(h, x, 2, new Int32Array([0, 1, 2, 3]), weights, K, 'both' as 'gpu', out), /cpu, gpu or split/);
  gpuExpertsRelease(h);
  h.dispose();
});
