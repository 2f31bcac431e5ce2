// Quant references: round-trip error bounds, hand-built blocks with known values, determinism,
// and byte-for-byte agreement with ggml's own reference quantizers (llama.cpp's libggml-base).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { quantize, dequantize } from '../../src/formats/quant.ts';
import { fp32ToFp16, fp16ToFp32, fp32ToBf16, bf16ToFp32 } from '../../src/formats/half.ts';
import { GgmlType } from '../../src/formats/ggml-types.ts';

/** Seeded normal(0,1) samples (Box-Muller over an LCG): test data only. */
function normals(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return x;
}

function rmse(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return Math.sqrt(s / a.length);
}

test('round-trip error bounds per type on N(0,1) data', () => {
  const x = normals(256 * 64, 1);
  // Bounds sit ~15% above what ggml's algorithms reach on this data (Q4_K 0.069, Q5_K 0.034, Q6_K 0.017).
  const bounds: Array<[GgmlType, number]> = [[GgmlType.Q8_0, 0.006], [GgmlType.Q6_K, 0.02], [GgmlType.Q5_K, 0.04], [GgmlType.Q4_K, 0.08]];
  for (const [type, bound] of bounds) {
    const y = dequantize(type, quantize(type, x), x.length);
    const e = rmse(x, y);
    assert.ok(e < bound && e > bound / 3, `${GgmlType[type]} rmse ${e} outside (${bound / 3}, ${bound})`);
  }
  assert.deepEqual(dequantize(GgmlType.F32, quantize(GgmlType.F32, x), x.length), x);
  const h = dequantize(GgmlType.F16, quantize(GgmlType.F16, x), x.length);
  const b = dequantize(GgmlType.BF16, quantize(GgmlType.BF16, x), x.length);
  for (let i = 0; i < x.length; i++) {
    assert.ok(Math.abs(h[i] - x[i]) <= Math.max(Math.abs(x[i]) * 2 ** -11, 2 ** -25), `F16 ${x[i]} -> ${h[i]}`);
    assert.ok(Math.abs(b[i] - x[i]) <= Math.abs(x[i]) * 2 ** -8, `BF16 ${x[i]} -> ${b[i]}`);
  }
});

// d is stored as f16 (relative error up to 2^-11), which adds up to 127 * 2^-11 steps at the largest level.
test('Q8_0 error is at most half a step per value, plus the f16 rounding of d', () => {
  const x = normals(32 * 16, 2);
  const y = dequantize(GgmlType.Q8_0, quantize(GgmlType.Q8_0, x), x.length);
  for (let blk = 0; blk < 16; blk++) {
    const amax = Math.max(...x.subarray(32 * blk, 32 * blk + 32).map(Math.abs));
    for (let j = 0; j < 32; j++) {
      const i = 32 * blk + j;
      assert.ok(Math.abs(x[i] - y[i]) <= (amax / 127) * (0.5 + 127 * 2 ** -11), `value ${i}: ${x[i]} -> ${y[i]}`);
    }
  }
});

test('half and bfloat16 special values', () => {
  assert.equal(fp32ToFp16(1), 0x3c00);
  assert.equal(fp32ToFp16(-2), 0xc000);
  assert.equal(fp32ToFp16(65504), 0x7bff);
  assert.equal(fp32ToFp16(65520), 0x7c00); // rounds up to infinity
  assert.equal(fp32ToFp16(2 ** -24), 0x0001); // smallest subnormal
  assert.equal(fp32ToFp16(1 + 2 ** -11), 0x3c00); // tie -> even
  assert.equal(fp32ToFp16(1 + 3 * 2 ** -11), 0x3c02); // tie -> even (up)
  assert.equal(fp32ToFp16(NaN) & 0x7e00, 0x7e00);
  assert.equal(fp16ToFp32(0x3555), 0.333251953125);
  assert.equal(fp16ToFp32(0x0001), 2 ** -24);
  assert.equal(fp16ToFp32(0xfc00), -Infinity);
  assert.equal(fp32ToBf16(1), 0x3f80);
  assert.equal(fp32ToBf16(1 + 2 ** -8), 0x3f80); // tie -> even
  assert.equal(fp32ToBf16(1 + 3 * 2 ** -8), 0x3f82);
  assert.ok(Number.isNaN(bf16ToFp32(fp32ToBf16(NaN))));
  assert.equal(bf16ToFp32(0xc040), -3);
});

test('Q8_0 dequantize of a hand-built block', () => {
  const block = new Uint8Array(34);
  block[0] = 0x00; block[1] = 0x38; // d = 0.5
  const q = [-128, -1, 0, 1, 127];
  q.forEach((v, i) => (block[2 + i] = v & 0xff));
  const y = dequantize(GgmlType.Q8_0, block, 32);
  assert.deepEqual([...y.subarray(0, 5)], [-64, -0.5, 0, 0.5, 63.5]);
  assert.ok(y.subarray(5).every((v) => v === 0));
});

// Q4_K/Q5_K scales field: sub-block j's (scale, min) pairs decoded by hand from these 12 bytes:
// j<4 : scale = b[j] & 63, min = b[j+4] & 63
// j>=4: scale = (b[j+4] & 15) | (b[j-4] >> 6) << 4, min = (b[j+4] >> 4) | (b[j] >> 6) << 4
const KSCALES = [0x41, 0x02, 0x03, 0x04, 0x00, 0x01, 0x02, 0x03, 0x21, 0x42, 0x53, 0x64];
const KSC = [1, 2, 3, 4, 17, 2, 3, 4];
const KMIN = [0, 1, 2, 3, 2, 4, 5, 6];

test('Q4_K dequantize of a hand-built block', () => {
  const b = new Uint8Array(144);
  b.set([0x00, 0x3c, 0x00, 0x38], 0); // d = 1, dmin = 0.5
  b.set(KSCALES, 4);
  b.fill(0x5a, 16); // low nibble 10 (even sub-blocks), high nibble 5 (odd sub-blocks)
  const y = dequantize(GgmlType.Q4_K, b, 256);
  for (let i = 0; i < 256; i++) {
    const j = i >> 5;
    assert.equal(y[i], KSC[j] * (j % 2 ? 5 : 10) - 0.5 * KMIN[j], `value ${i}`);
  }
});

test('Q5_K dequantize of a hand-built block', () => {
  const b = new Uint8Array(176);
  b.set([0x00, 0x3c, 0x00, 0x38], 0);
  b.set(KSCALES, 4);
  b.fill(0b110, 16, 48); // qh bits 1 and 2: +16 for sub-blocks 1 and 2
  b.fill(0x5a, 48);
  const y = dequantize(GgmlType.Q5_K, b, 256);
  for (let i = 0; i < 256; i++) {
    const j = i >> 5;
    const q = (j % 2 ? 5 : 10) + (j === 1 || j === 2 ? 16 : 0);
    assert.equal(y[i], KSC[j] * q - 0.5 * KMIN[j], `value ${i}`);
  }
});

test('Q6_K dequantize of a hand-built block', () => {
  const b = new Uint8Array(210);
  b.fill(0x21, 0, 128); // ql: low nibble 1, high nibble 2
  b.fill(0b11100100, 128, 192); // qh 2-bit fields 0,1,2,3 for the four 32-value quarters
  const sc = [1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12, 13, -14, 15, -16];
  sc.forEach((v, i) => (b[192 + i] = v & 0xff));
  b.set([0x00, 0x34], 208); // d = 0.25
  // quarter k of each 128-value half: q = (nibble | hi << 4) - 32 = 1-32, 17-32, 2+32-32, 2+48-32
  const qk = [-31, -15, 2, 18];
  const y = dequantize(GgmlType.Q6_K, b, 256);
  for (let i = 0; i < 256; i++) {
    const h = i >> 7, k = (i >> 5) & 3, l = i & 31;
    assert.equal(y[i], 0.25 * sc[8 * h + (l >> 4) + 2 * k] * qk[k], `value ${i}`);
  }
});

test('quantize is deterministic and rejects partial blocks', () => {
  const x = normals(512, 3);
  for (const t of [GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.Q8_0, GgmlType.BF16]) {
    assert.deepEqual(quantize(t, x), quantize(t, x.slice()));
  }
  assert.throws(() => quantize(GgmlType.Q4_K, new Float32Array(100)), /Q4_K works on blocks of 256 values, got 100/);
  assert.throws(() => quantize(GgmlType.Q4_0, new Float32Array(32)), /no reference quantizer for ggml type Q4_0/);
});

// llama.cpp's libggml-base as shipped by node-llama-cpp (a dev dependency); gcc builds the harness.
const GGML_LIB_DIR = fileURLToPath(new URL('../../node_modules/@node-llama-cpp/linux-x64/bins/linux-x64', import.meta.url));
const haveGcc = (() => {
  try {
    execFileSync('gcc', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
const skipGgml = process.platform !== 'linux' || process.arch !== 'x64'
  ? 'ggml cross-check needs linux-x64'
  : !existsSync(join(GGML_LIB_DIR, 'libggml-base.so'))
    ? `no libggml-base.so in ${GGML_LIB_DIR} (npm install node-llama-cpp)`
    : !haveGcc
      ? 'no gcc to build the ggml harness'
      : false;

test('bytes equal ggml reference quantizers', { skip: skipGgml }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'mixtile-quant-'));
  try {
    const exe = join(dir, 'ggml-quant-ref');
    execFileSync('gcc', ['-O1', fileURLToPath(new URL('./ggml-quant-ref.c', import.meta.url)), '-o', exe, `-L${GGML_LIB_DIR}`, '-lggml-base', `-Wl,-rpath,${GGML_LIB_DIR}`]);
    // Regimes per 256-block: small normals, all positive, zeros, tiny, outliers, coarse ties, huge.
    const n = 256 * 48;
    const g = normals(n, 4);
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const r = (i >> 8) % 8;
      x[i] = [g[i] * 0.02, Math.abs(g[i]), 0, g[i] * 1e-6, i % 97 === 0 ? g[i] * 100 : g[i], Math.round(g[i] * 4) / 4, g[i] * 30000, g[i]][r];
    }
    writeFileSync(join(dir, 'in.f32'), new Uint8Array(x.buffer));
    execFileSync(exe, [join(dir, 'in.f32'), String(n), join(dir, 'out')]);
    for (const t of ['F16', 'BF16', 'Q8_0', 'Q4_K', 'Q5_K', 'Q6_K'] as const) {
      const ref = new Uint8Array(readFileSync(join(dir, `out.${t}`)));
      const ours = quantize(GgmlType[t], x);
      const first = ours.findIndex((v, i) => v !== ref[i]);
      assert.equal(first, -1, `${t}: first differing byte ${first}`);
      assert.equal(ours.length, ref.length);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
