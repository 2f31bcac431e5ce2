// Seeded random tensor data in any type Mixtile writes, produced chunk by chunk (bounded memory)
// for `mixtile synth`. Every tensor has its own stream (seed + tensor name), so one tensor can be
// regenerated alone, and no two pages of a file repeat.
//
// Values are uniform with the requested mean and std (like PyTorch's default Linear init). Float
// types and Q8_0 encode those floats exactly as the reference quantizers do. K-quants are written
// directly as random blocks with the requested std (random codes, random 6/8-bit sub-block scales),
// because the JS reference K-quantizers run at ~1 M values/s, far too slow for a 60 GB model;
// `exactQuant` forces the reference quantizer instead.
import { GGML_TYPES, GgmlType } from './ggml-types.ts';
import { quantize } from './quant.ts';
import { fp32ToFp16 } from './half.ts';
import { packScaleMin } from './quant-k.ts';

/** xoshiro128**: fast, 2^128 period, good enough for weights; seeded through splitmix32. */
export class Xoshiro128 {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number) {
    let x = seed >>> 0;
    const splitmix = () => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = splitmix();
    this.s1 = splitmix();
    this.s2 = splitmix();
    this.s3 = splitmix();
  }

  nextU32(): number {
    const s1 = this.s1;
    const m = Math.imul(s1, 5);
    const result = Math.imul((m << 7) | (m >>> 25), 9) >>> 0;
    const t = s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = (this.s3 << 11) | (this.s3 >>> 21);
    return result;
  }

  fillBytes(out: Uint8Array, from: number, to: number): void {
    for (let i = from; i < to; i += 4) {
      const v = this.nextU32();
      out[i] = v & 0xff;
      if (i + 1 < to) out[i + 1] = (v >>> 8) & 0xff;
      if (i + 2 < to) out[i + 2] = (v >>> 16) & 0xff;
      if (i + 3 < to) out[i + 3] = v >>> 24;
    }
  }
}

/** The stream seed of one tensor: FNV-1a of its name mixed with the model seed. */
export function tensorSeed(seed: number, name: string): number {
  let h = 0x811c9dc5 ^ Math.imul(seed >>> 0, 0x9e3779b1);
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

export interface RandomTensorSpec {
  name: string;
  type: GgmlType;
  /** ggml dims; dims[0] is the row length. */
  dims: number[];
  mean: number;
  std: number;
}

/** Float values per chunk: 4 MiB of float32, so a chunk stays small whatever the tensor. */
const CHUNK_VALUES = 1 << 20;

const DIRECT_K: ReadonlySet<GgmlType> = new Set([GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K]);

/**
 * The tensor's bytes, chunk by chunk (whole rows per chunk). Same spec and seed, same bytes.
 * With `exactQuant`, K-quants come from the reference quantizer on uniform floats (slow).
 */
export function* randomTensorChunks(spec: RandomTensorSpec, seed: number, exactQuant = false): Generator<Uint8Array> {
  const info = GGML_TYPES.get(spec.type);
  if (!info) throw new Error(`tensor "${spec.name}": unknown ggml type ${spec.type}`);
  const rowLength = spec.dims[0];
  const nRows = spec.dims.slice(1).reduce((a, b) => a * b, 1);
  const rowsPerChunk = Math.max(1, Math.floor(CHUNK_VALUES / rowLength));
  const rng = new Xoshiro128(tensorSeed(seed, spec.name));
  const direct = DIRECT_K.has(spec.type) && !exactQuant;
  if (direct && spec.mean !== 0) throw new Error(`tensor "${spec.name}": direct K-quant blocks are zero-mean, asked for mean ${spec.mean}`);
  const floats = direct ? undefined : new Float32Array(Math.min(nRows, rowsPerChunk) * rowLength);
  for (let row = 0; row < nRows; row += rowsPerChunk) {
    const n = Math.min(rowsPerChunk, nRows - row) * rowLength;
    if (direct) {
      yield randomKBlocks(spec.type, n / 256, spec.std, rng);
      continue;
    }
    const x = floats!.subarray(0, n);
    // Uniform on [mean - a, mean + a] has std a / sqrt(3).
    const a = spec.std * Math.sqrt(3);
    for (let i = 0; i < n; i++) x[i] = spec.mean + a * (rng.nextU32() * (2 / 2 ** 32) - 1);
    yield quantize(spec.type, x);
  }
}

/** Std of a uniform variable over k equally likely consecutive integers. */
const levelStd = (k: number) => Math.sqrt((k * k - 1) / 12);
/** Root mean square of the integers lo..hi. */
function rmsRange(lo: number, hi: number): number {
  let s = 0;
  for (let v = lo; v <= hi; v++) s += v * v;
  return Math.sqrt(s / (hi - lo + 1));
}
const RMS_SCALE_6BIT = rmsRange(32, 63);
const RMS_SCALE_Q6 = rmsRange(64, 127);

/**
 * `nBlocks` random K-quant super-blocks whose values have mean ~0 and std ~`std`: codes uniform
 * over all levels; sub-block scales uniform in the top half of their range; Q4_K/Q5_K mins set to
 * cancel the codes' mean (dmin = d * 2^(bits-1), m = round(scale * meanLevel / 2^(bits-1))).
 */
function randomKBlocks(type: GgmlType, nBlocks: number, std: number, rng: Xoshiro128): Uint8Array {
  const blockBytes = GGML_TYPES.get(type)!.blockBytes;
  const out = new Uint8Array(nBlocks * blockBytes);
  if (type === GgmlType.Q6_K) {
    const d = fp32ToFp16(std / (levelStd(64) * RMS_SCALE_Q6));
    for (let o = 0; o < out.length; o += blockBytes) {
      rng.fillBytes(out, o, o + 192); // ql[128], qh[64]
      for (let j = 0; j < 16; j++) out[o + 192 + j] = 64 + (rng.nextU32() & 63);
      out[o + 208] = d & 0xff;
      out[o + 209] = d >> 8;
    }
    return out;
  }
  const bits = type === GgmlType.Q4_K ? 4 : 5;
  const half = 1 << (bits - 1);
  const meanLevel = ((1 << bits) - 1) / 2;
  const dValue = std / (levelStd(1 << bits) * RMS_SCALE_6BIT);
  const d = fp32ToFp16(dValue);
  const dmin = fp32ToFp16(dValue * half);
  for (let o = 0; o < out.length; o += blockBytes) {
    out[o] = d & 0xff;
    out[o + 1] = d >> 8;
    out[o + 2] = dmin & 0xff;
    out[o + 3] = dmin >> 8;
    for (let j = 0; j < 8; j++) {
      const sc = 32 + (rng.nextU32() & 31);
      packScaleMin(out, o + 4, j, sc, Math.round((sc * meanLevel) / half));
    }
    rng.fillBytes(out, o + 16, o + blockBytes); // Q4_K: qs[128]; Q5_K: qh[32] + qs[128]
  }
  return out;
}
