// The experts backend named by a placement rule reaches the native op: every known name loads and
// gives the same output as "auto" where it falls back to the same kernels, and an unknown one is
// refused with the list of known names (the rules layer also refuses it, this guards the native API).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GgmlType } from '../../src/formats/ggml-types.ts';
import { ffnBlockCreateMoe, ffnBlockDispose, ffnBlockForward } from '../../src/native/norm.ts';
import { weightFromBytes, type NativeWeight } from '../../src/native/tensor.ts';
import { isaInfo } from '../../src/native/isa.ts';

const HIDDEN = 64;
const FFN = 32;
const N_EXPERT = 4;

function f32(dims: number[], seed: number, scale: number): NativeWeight {
  const n = dims.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    v[i] = ((s / 2 ** 32) * 2 - 1) * scale;
  }
  return weightFromBytes(new Uint8Array(v.buffer), GgmlType.F32, dims);
}

function run(backend: string | undefined, x: Float32Array): Float32Array {
  const w = {
    norm: f32([HIDDEN], 1, 1),
    router: f32([HIDDEN, N_EXPERT], 2, 1),
    gate: f32([HIDDEN, FFN, N_EXPERT], 3, 0.2),
    up: f32([HIDDEN, FFN, N_EXPERT], 4, 0.2),
    down: f32([FFN, HIDDEN, N_EXPERT], 5, 0.2),
  };
  const block = ffnBlockCreateMoe({
    layer: 0,
    eps: 1e-6,
    norm: w.norm.handle,
    router: w.router.handle,
    gateExps: w.gate.handle,
    upExps: w.up.handle,
    downExps: w.down.handle,
    topK: 2,
    normTopKProb: true,
    ...(backend ? { backend } : {}),
  });
  const y = x.slice();
  ffnBlockForward(block, y, x.length / HIDDEN);
  ffnBlockDispose(block);
  return y;
}

test('experts backend from the rules: known names load, unknown names are refused', () => {
  const x = new Float32Array(3 * HIDDEN).map((_, i) => Math.sin(i * 0.37));
  const auto = run(undefined, x);
  assert.ok(auto.some((v, i) => Math.abs(v - x[i]!) > 1e-3), 'the block changes x');
  // F32 weights go to AMX only when a rule names an AMX backend (their rounding is then the user's
  // call): without AMX every backend runs the same generic kernels; with AMX those two round.
  const amx = isaInfo().amxTile;
  const scale = Math.max(...auto.map(Math.abs));
  // AMXInt4 holds Q4_K gate/up only: these F32 weights get AMXInt8 instead.
  for (const backend of ['auto', 'AVX512', 'generic', 'llamafile', 'AMXInt8', 'AMXBF16', 'AMXInt4']) {
    const y = run(backend, x);
    if (amx && backend.startsWith('AMX')) {
      const worst = Math.max(...y.map((v, i) => Math.abs(v - auto[i]!)));
      assert.ok(worst < 0.05 * scale, `backend ${backend}: max |diff| ${worst} vs scale ${scale}`);
    } else {
      assert.deepEqual(y, auto, `backend ${backend} on ${isaInfo().active}`);
    }
  }
  assert.throws(() => run('AMXFP4', x), /unknown backend "AMXFP4" \(known: auto, AMXInt8, AMXBF16, AMXInt4, AVX512, llamafile, generic\)/);
});
