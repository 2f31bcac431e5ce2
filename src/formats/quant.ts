// Reference quantize/dequantize for the tensor types Mixtile writes: F32, F16, BF16, Q8_0 here,
// the K-quants (Q4_K, Q5_K, Q6_K) in quant-k.ts. Byte layouts are ggml's (ggml-common.h); the
// algorithms follow ggml-quants.c's *_ref functions with every step in float32 (Math.fround), so
// results are bit-exact with ggml built without FMA contraction (test/formats/quant.test.ts checks
// against llama.cpp's libggml-base). These are the reference the native kernels are tested against;
// they are not fast: one thread quantizes Q4_K at ~1 M values/s, Q5_K ~3 M/s, Q6_K ~1.3 M/s,
// Q8_0 ~40 M/s (convert spreads the work over cores with QuantPool).
import { GGML_TYPES, GgmlType } from './ggml-types.ts';
import { fp32ToFp16, bf16ToFp32, FP16_TABLE } from './half.ts';
import { quantizeQ4K, quantizeQ5K, quantizeQ6K, dequantizeQ4K, dequantizeQ5K, dequantizeQ6K } from './quant-k.ts';

const f = Math.fround;

function quantizeQ8_0(x: Float32Array, out: Uint8Array): void {
  const out8 = new Int8Array(out.buffer, out.byteOffset, out.length);
  for (let b = 0, o = 0; b < x.length; b += 32, o += 34) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b + j]));
    const d = f(amax / 127);
    const id = d ? f(1 / d) : 0;
    const h = fp32ToFp16(d);
    out[o] = h & 0xff;
    out[o + 1] = h >> 8;
    // roundf: halves away from zero.
    for (let j = 0; j < 32; j++) {
      const v = f(x[b + j] * id);
      out8[o + 2 + j] = v < 0 ? -Math.round(-v) : Math.round(v);
    }
  }
}

function dequantizeQ8_0(bytes: Uint8Array, y: Float32Array): void {
  const q = new Int8Array(bytes.buffer, bytes.byteOffset, bytes.length);
  for (let b = 0, o = 0; b < y.length; b += 32, o += 34) {
    const d = FP16_TABLE[bytes[o] | (bytes[o + 1] << 8)];
    for (let j = 0; j < 32; j++) y[b + j] = q[o + 2 + j] * d;
  }
}

/** Types with a reference quantizer here. */
export const QUANT_TYPES: ReadonlySet<GgmlType> = new Set([GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K]);

function checkLength(type: GgmlType, n: number): { name: string; nBytes: number } {
  const info = GGML_TYPES.get(type);
  if (!info || !QUANT_TYPES.has(type)) {
    throw new Error(`no reference quantizer for ggml type ${info?.name ?? type} (have: ${[...QUANT_TYPES].map((t) => GGML_TYPES.get(t)!.name).join(', ')})`);
  }
  if (n % info.blockSize !== 0) throw new Error(`${info.name} works on blocks of ${info.blockSize} values, got ${n}`);
  return { name: info.name, nBytes: (n / info.blockSize) * info.blockBytes };
}

/** Bytes of `x` encoded as `type`, ggml's block layout; x.length must be a whole number of blocks. */
export function quantize(type: GgmlType, x: Float32Array): Uint8Array {
  const { nBytes } = checkLength(type, x.length);
  const out = new Uint8Array(nBytes);
  switch (type) {
    case GgmlType.F32:
      out.set(new Uint8Array(x.buffer, x.byteOffset, nBytes));
      break;
    case GgmlType.F16: {
      const h = new Uint16Array(out.buffer);
      for (let i = 0; i < x.length; i++) h[i] = fp32ToFp16(x[i]);
      break;
    }
    case GgmlType.BF16: {
      // Inline ggml_compute_fp32_to_bf16 on the raw bits: the hot path of synth's BF16 models.
      const h = new Uint16Array(out.buffer);
      const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
      for (let i = 0; i < u.length; i++) {
        const b = u[i];
        h[i] = (b & 0x7fffffff) > 0x7f800000 ? (b >>> 16) | 64 : (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
      }
      break;
    }
    case GgmlType.Q8_0: quantizeQ8_0(x, out); break;
    case GgmlType.Q4_K: quantizeQ4K(x, out); break;
    case GgmlType.Q5_K: quantizeQ5K(x, out); break;
    case GgmlType.Q6_K: quantizeQ6K(x, out); break;
  }
  return out;
}

/** The `n` float values encoded in `bytes` as `type`. */
export function dequantize(type: GgmlType, bytes: Uint8Array, n: number): Float32Array {
  const { name, nBytes } = checkLength(type, n);
  if (bytes.length < nBytes) throw new Error(`${n} ${name} values need ${nBytes} bytes, got ${bytes.length}`);
  const y = new Float32Array(n);
  switch (type) {
    case GgmlType.F32:
      new Uint8Array(y.buffer).set(bytes.subarray(0, nBytes));
      break;
    case GgmlType.F16:
      for (let i = 0; i < n; i++) y[i] = FP16_TABLE[bytes[2 * i] | (bytes[2 * i + 1] << 8)];
      break;
    case GgmlType.BF16:
      for (let i = 0; i < n; i++) y[i] = bf16ToFp32(bytes[2 * i] | (bytes[2 * i + 1] << 8));
      break;
    case GgmlType.Q8_0: dequantizeQ8_0(bytes, y); break;
    case GgmlType.Q4_K: dequantizeQ4K(bytes, y); break;
    case GgmlType.Q5_K: dequantizeQ5K(bytes, y); break;
    case GgmlType.Q6_K: dequantizeQ6K(bytes, y); break;
  }
  return y;
}
