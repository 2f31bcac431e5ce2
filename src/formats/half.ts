// IEEE half and bfloat16 conversions exactly as ggml does them (ggml-impl.h), for the quant
// references and the synthetic-model writer.

// Typed-array views in formats/ assume little-endian memory, as GGUF does.
if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new Error('mixtile needs a little-endian CPU');

const f = Math.fround;
const F32_VIEW = new Float32Array(1);
const U32_VIEW = new Uint32Array(F32_VIEW.buffer);

function bitsOf(x: number): number {
  F32_VIEW[0] = x;
  return U32_VIEW[0];
}
function floatOf(bits: number): number {
  U32_VIEW[0] = bits >>> 0;
  return F32_VIEW[0];
}

const SCALE_TO_INF = floatOf(0x77800000);
const SCALE_TO_ZERO = floatOf(0x08800000);

/** float32 -> IEEE half bits, round to nearest even (ggml_compute_fp32_to_fp16, the FP16 library's trick). */
export function fp32ToFp16(x: number): number {
  let base = f(f(Math.abs(f(x)) * SCALE_TO_INF) * SCALE_TO_ZERO);
  const w = bitsOf(x);
  const shl1W = (w + w) >>> 0;
  const sign = w & 0x80000000;
  let bias = (shl1W & 0xff000000) >>> 0;
  if (bias < 0x71000000) bias = 0x71000000;
  base = f(floatOf((bias >>> 1) + 0x07800000) + base);
  const bits = bitsOf(base);
  const expBits = (bits >>> 13) & 0x7c00;
  const mantissaBits = bits & 0x0fff;
  const nonsign = expBits + mantissaBits;
  return ((sign >>> 16) | (shl1W > 0xff000000 ? 0x7e00 : nonsign)) & 0xffff;
}

/** IEEE half bits -> float32 value (exact). */
export function fp16ToFp32(h: number): number {
  const exp = (h >> 10) & 0x1f;
  const man = h & 0x3ff;
  const sign = h & 0x8000 ? -1 : 1;
  if (exp === 0) return sign * man * 2 ** -24;
  if (exp === 31) return man ? NaN : sign * Infinity;
  return sign * (1024 + man) * 2 ** (exp - 25);
}

/** float32 -> bfloat16 bits, round to nearest even; NaN stays a quiet NaN (ggml_compute_fp32_to_bf16). */
export function fp32ToBf16(x: number): number {
  const u = bitsOf(x);
  if ((u & 0x7fffffff) >>> 0 > 0x7f800000) return ((u >>> 16) | 64) & 0xffff;
  return ((u + (0x7fff + ((u >>> 16) & 1))) >>> 16) & 0xffff;
}

export function bf16ToFp32(h: number): number {
  return floatOf(h << 16);
}

/** Half-float table: dequantizing scales is a hot path in the K-quant references. */
export const FP16_TABLE = new Float32Array(65536);
for (let i = 0; i < 65536; i++) FP16_TABLE[i] = fp16ToFp32(i);

/** float8 e4m3fn (PyTorch float8_e4m3fn: bias 7, no infinities, 0x7f/0xff NaN) -> float32, by table. */
const FP8_E4M3_TABLE = new Float32Array(256);
for (let b = 0; b < 256; b++) {
  const exp = (b >> 3) & 0xf;
  const man = b & 7;
  const mag = (b & 0x7f) === 0x7f ? NaN : exp === 0 ? man * 2 ** -9 : (8 + man) * 2 ** (exp - 10);
  FP8_E4M3_TABLE[b] = b & 0x80 ? -mag : mag;
}
export function fp8e4m3ToFp32(b: number): number {
  return FP8_E4M3_TABLE[b];
}
