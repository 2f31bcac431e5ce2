// K-quant references (ggml-quants.c: quantize_row_q{4,5,6}_K_ref, dequantize_row_q{4,5,6}_K).
// Super-blocks of 256 values; every arithmetic step is rounded to float32 (Math.fround, `f`)
// in C's evaluation order, so bytes match ggml compiled without FMA contraction.
//
// Block layouts (bytes):
//   block_q4_K (144): d f16 @0, dmin f16 @2, scales[12] @4 (8 six-bit scale/min pairs), qs[128] @16
//   block_q5_K (176): d f16 @0, dmin f16 @2, scales[12] @4, qh[32] @16 (5th bits), qs[128] @48
//   block_q6_K (210): ql[128] @0 (low 4 bits), qh[64] @128 (high 2 bits), scales[16] i8 @192, d f16 @208
import { fp32ToFp16, FP16_TABLE } from './half.ts';

const f = Math.fround;
const QK_K = 256;
const GROUP_MAX_EPS = f(1e-15);
const RDELTA = f(0.1);

/** ggml's nearest_int: round half to even via the 1.5*2^23 trick; arg is a float32 value. */
function nearestInt(v: number): number {
  return f(v + 12582912) - 12582912;
}

function putF16(out: Uint8Array, o: number, v: number): void {
  const h = fp32ToFp16(v);
  out[o] = h & 0xff;
  out[o + 1] = h >> 8;
}
function getF16(b: Uint8Array, o: number): number {
  return FP16_TABLE[b[o] | (b[o + 1] << 8)];
}

// Scratch shared by the quantizers (single-threaded JS: no reentrancy).
const L = new Uint8Array(QK_K);
const LAUX = new Uint8Array(32);
const WEIGHTS = new Float32Array(32);
const SCALES = new Float32Array(QK_K / 16);
const MINS = new Float32Array(QK_K / 32);
let lastMin = 0;

/**
 * make_qkx2_quants: scale and min for `n` values x[xo..] with levels 0..nmax (weighted search over
 * nstep+1 candidate scales). Levels go to L[lo..]; the (positive) min goes to `lastMin`.
 */
function makeQkx2(n: number, nmax: number, x: Float32Array, xo: number, lo: number, rmin: number, nstep: number): number {
  let min = x[xo];
  let max = x[xo];
  let sumW = WEIGHTS[0];
  let sumX = f(sumW * x[xo]);
  for (let i = 1; i < n; i++) {
    const xi = x[xo + i];
    if (xi < min) min = xi;
    if (xi > max) max = xi;
    const w = WEIGHTS[i];
    sumW = f(sumW + w);
    sumX = f(sumX + f(w * xi));
  }
  if (min > 0) min = 0;
  if (max === min) {
    L.fill(0, lo, lo + n);
    lastMin = -min;
    return 0;
  }
  let iscale = f(nmax / f(max - min));
  let scale = f(1 / iscale);
  let bestError = 0;
  for (let i = 0; i < n; i++) {
    const l = Math.max(0, Math.min(nmax, nearestInt(f(iscale * f(x[xo + i] - min)))));
    L[lo + i] = l;
    const diff = f(f(f(scale * l) + min) - x[xo + i]);
    bestError = f(bestError + f(WEIGHTS[i] * f(diff * diff)));
  }
  for (let is = 0; is <= nstep; is++) {
    // `min` moves when a candidate wins, and ggml keeps using the moved value here.
    iscale = f(f(f(rmin + f(RDELTA * is)) + nmax) / f(max - min));
    let sumL = 0;
    let sumL2 = 0;
    let sumXL = 0;
    for (let i = 0; i < n; i++) {
      const l = Math.max(0, Math.min(nmax, nearestInt(f(iscale * f(x[xo + i] - min)))));
      LAUX[i] = l;
      const wl = f(WEIGHTS[i] * l);
      sumL = f(sumL + wl);
      sumL2 = f(sumL2 + f(wl * l));
      sumXL = f(sumXL + f(wl * x[xo + i]));
    }
    const D = f(f(sumW * sumL2) - f(sumL * sumL));
    if (D > 0) {
      let thisScale = f(f(f(sumW * sumXL) - f(sumX * sumL)) / D);
      let thisMin = f(f(f(sumL2 * sumX) - f(sumL * sumXL)) / D);
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = f(sumXL / sumL2);
      }
      let curError = 0;
      for (let i = 0; i < n; i++) {
        const diff = f(f(f(thisScale * LAUX[i]) + thisMin) - x[xo + i]);
        curError = f(curError + f(WEIGHTS[i] * f(diff * diff)));
      }
      if (curError < bestError) {
        L.set(LAUX.subarray(0, n), lo);
        bestError = curError;
        scale = thisScale;
        min = thisMin;
      }
    }
  }
  lastMin = -min;
  return scale;
}

/** Shared first half of Q4_K/Q5_K: per-32 scales and mins, packed 6-bit into scales[12]; levels requantized into L. */
function quantizeScaleMinBlock(x: Float32Array, xo: number, out: Uint8Array, o: number, nmax: number, rmin: number, nstep: number): void {
  let maxScale = 0;
  let maxMin = 0;
  for (let j = 0; j < QK_K / 32; j++) {
    let sumX2 = 0;
    for (let l = 0; l < 32; l++) sumX2 = f(sumX2 + f(x[xo + 32 * j + l] * x[xo + 32 * j + l]));
    const avX = f(Math.sqrt(f(sumX2 / 32)));
    for (let l = 0; l < 32; l++) WEIGHTS[l] = f(avX + Math.abs(x[xo + 32 * j + l]));
    const scale = makeQkx2(32, nmax, x, xo + 32 * j, 32 * j, rmin, nstep);
    SCALES[j] = scale;
    MINS[j] = lastMin;
    if (scale > maxScale) maxScale = scale;
    if (lastMin > maxMin) maxMin = lastMin;
  }
  const invScale = maxScale > 0 ? f(63 / maxScale) : 0;
  const invMin = maxMin > 0 ? f(63 / maxMin) : 0;
  const sc = o + 4;
  out.fill(0, sc, sc + 12);
  for (let j = 0; j < QK_K / 32; j++) {
    packScaleMin(out, sc, j, Math.min(63, nearestInt(f(invScale * SCALES[j])) & 0xff), Math.min(63, nearestInt(f(invMin * MINS[j])) & 0xff));
  }
  putF16(out, o, f(maxScale / 63));
  putF16(out, o + 2, f(maxMin / 63));
  const d = getF16(out, o);
  const dmin = getF16(out, o + 2);
  for (let j = 0; j < QK_K / 32; j++) {
    const [s, m] = scaleMin(out, sc, j);
    const dj = f(d * s);
    if (!dj) continue;
    const dm = f(dmin * m);
    for (let ii = 0; ii < 32; ii++) {
      L[32 * j + ii] = Math.max(0, Math.min(nmax, nearestInt(f(f(x[xo + 32 * j + ii] + dm) / dj))));
    }
  }
}

/**
 * Stores sub-block j's 6-bit scale and min into the 12-byte scales field at q[sc..] (which must
 * start zeroed): j<4 in the low 6 bits of bytes j and j+4; j>=4 as nibbles of byte j+4 with the
 * top 2 bits in bytes j-4 and j.
 */
export function packScaleMin(q: Uint8Array, sc: number, j: number, scale: number, min: number): void {
  if (j < 4) {
    q[sc + j] |= scale;
    q[sc + j + 4] |= min;
  } else {
    q[sc + j + 4] = (scale & 0xf) | ((min & 0xf) << 4);
    q[sc + j - 4] |= (scale >> 4) << 6;
    q[sc + j] |= (min >> 4) << 6;
  }
}

/** get_scale_min_k4: the j-th 6-bit (scale, min) pair of a 12-byte scales field at q[sc..]. */
function scaleMin(q: Uint8Array, sc: number, j: number): [number, number] {
  if (j < 4) return [q[sc + j] & 63, q[sc + j + 4] & 63];
  return [(q[sc + j + 4] & 0xf) | ((q[sc + j - 4] >> 6) << 4), (q[sc + j + 4] >> 4) | ((q[sc + j] >> 6) << 4)];
}

export function quantizeQ4K(x: Float32Array, out: Uint8Array): void {
  for (let xo = 0, o = 0; xo < x.length; xo += QK_K, o += 144) {
    quantizeScaleMinBlock(x, xo, out, o, 15, -1, 20);
    // qs: 32 bytes per 64 values, low nibble = first 32, high nibble = next 32.
    for (let j = 0, q = o + 16; j < QK_K; j += 64, q += 32) {
      for (let l = 0; l < 32; l++) out[q + l] = L[j + l] | (L[j + l + 32] << 4);
    }
  }
}

export function quantizeQ5K(x: Float32Array, out: Uint8Array): void {
  for (let xo = 0, o = 0; xo < x.length; xo += QK_K, o += 176) {
    quantizeScaleMinBlock(x, xo, out, o, 31, -0.5, 15);
    const qh = o + 16;
    out.fill(0, qh, qh + 32);
    let m1 = 1;
    let m2 = 2;
    for (let n = 0, ql = o + 48; n < QK_K; n += 64, ql += 32) {
      for (let j = 0; j < 32; j++) {
        let l1 = L[n + j];
        if (l1 > 15) { l1 -= 16; out[qh + j] |= m1; }
        let l2 = L[n + j + 32];
        if (l2 > 15) { l2 -= 16; out[qh + j] |= m2; }
        out[ql + j] = l1 | (l2 << 4);
      }
      m1 <<= 2;
      m2 <<= 2;
    }
  }
}

/** make_qx_quants with rmse_type 1 (weights x²), no importance: symmetric levels -nmax..nmax-1 stored +nmax. */
function makeQx(n: number, nmax: number, x: Float32Array, xo: number, lo: number): number {
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; i++) {
    const ax = Math.abs(x[xo + i]);
    if (ax > amax) { amax = ax; max = x[xo + i]; }
  }
  if (amax < GROUP_MAX_EPS) {
    L.fill(0, lo, lo + n);
    return 0;
  }
  let iscale = f(-nmax / max);
  let sumLX = 0;
  let sumL2 = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[xo + i];
    const l = Math.max(-nmax, Math.min(nmax - 1, nearestInt(f(iscale * xi))));
    L[lo + i] = l + nmax;
    const w = f(xi * xi);
    sumLX = f(sumLX + f(f(w * xi) * l));
    sumL2 = f(sumL2 + f(f(w * l) * l));
  }
  let scale = sumL2 ? f(sumLX / sumL2) : 0;
  let best = f(scale * sumLX);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    iscale = f(-f(nmax + f(RDELTA * is)) / max);
    sumLX = 0;
    sumL2 = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[xo + i];
      const l = Math.max(-nmax, Math.min(nmax - 1, nearestInt(f(iscale * xi))));
      const w = f(xi * xi);
      sumLX = f(sumLX + f(f(w * xi) * l));
      sumL2 = f(sumL2 + f(f(w * l) * l));
    }
    if (sumL2 > 0 && f(sumLX * sumLX) > f(best * sumL2)) {
      for (let i = 0; i < n; i++) L[lo + i] = nmax + Math.max(-nmax, Math.min(nmax - 1, nearestInt(f(iscale * x[xo + i]))));
      scale = f(sumLX / sumL2);
      best = f(scale * sumLX);
    }
  }
  return scale;
}

export function quantizeQ6K(x: Float32Array, out: Uint8Array): void {
  for (let xo = 0, o = 0; xo < x.length; xo += QK_K, o += 210) {
    let maxScale = 0;
    let maxAbsScale = 0;
    for (let ib = 0; ib < QK_K / 16; ib++) {
      const scale = makeQx(16, 32, x, xo + 16 * ib, 16 * ib);
      SCALES[ib] = scale;
      if (Math.abs(scale) > maxAbsScale) {
        maxAbsScale = Math.abs(scale);
        maxScale = scale;
      }
    }
    if (maxAbsScale < GROUP_MAX_EPS) {
      out.fill(0, o, o + 210);
      continue;
    }
    const iscale = f(-128 / maxScale);
    putF16(out, o + 208, f(1 / iscale));
    const d = getF16(out, o + 208);
    for (let ib = 0; ib < QK_K / 16; ib++) {
      const s = (Math.min(127, nearestInt(f(iscale * SCALES[ib]))) << 24) >> 24; // stored as int8
      out[o + 192 + ib] = s & 0xff;
      const dj = f(d * s);
      if (!dj) continue;
      for (let ii = 0; ii < 16; ii++) {
        L[16 * ib + ii] = 32 + Math.max(-32, Math.min(31, nearestInt(f(x[xo + 16 * ib + ii] / dj))));
      }
    }
    // Per 128 values: ql holds 64 bytes of nibbles (values l, l+64 | l+32, l+96), qh 32 bytes of 2-bit pairs.
    for (let j = 0, ql = o, qh = o + 128; j < QK_K; j += 128, ql += 64, qh += 32) {
      for (let l = 0; l < 32; l++) {
        const q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
        out[ql + l] = (q1 & 0xf) | ((q3 & 0xf) << 4);
        out[ql + l + 32] = (q2 & 0xf) | ((q4 & 0xf) << 4);
        out[qh + l] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
      }
    }
  }
}

export function dequantizeQ4K(b: Uint8Array, y: Float32Array): void {
  for (let yo = 0, o = 0; yo < y.length; o += 144) {
    const d = getF16(b, o);
    const dmin = getF16(b, o + 2);
    for (let j = 0, q = o + 16, is = 0; j < QK_K; j += 64, q += 32, is += 2) {
      const [s1, m1] = scaleMin(b, o + 4, is);
      const [s2, m2] = scaleMin(b, o + 4, is + 1);
      const d1 = f(d * s1), mm1 = f(dmin * m1), d2 = f(d * s2), mm2 = f(dmin * m2);
      for (let l = 0; l < 32; l++) y[yo++] = f(d1 * (b[q + l] & 0xf)) - mm1;
      for (let l = 0; l < 32; l++) y[yo++] = f(d2 * (b[q + l] >> 4)) - mm2;
    }
  }
}

export function dequantizeQ5K(b: Uint8Array, y: Float32Array): void {
  for (let yo = 0, o = 0; yo < y.length; o += 176) {
    const d = getF16(b, o);
    const dmin = getF16(b, o + 2);
    const qh = o + 16;
    let u1 = 1;
    let u2 = 2;
    for (let j = 0, ql = o + 48, is = 0; j < QK_K; j += 64, ql += 32, is += 2) {
      const [s1, m1] = scaleMin(b, o + 4, is);
      const [s2, m2] = scaleMin(b, o + 4, is + 1);
      const d1 = f(d * s1), mm1 = f(dmin * m1), d2 = f(d * s2), mm2 = f(dmin * m2);
      for (let l = 0; l < 32; l++) y[yo++] = f(d1 * ((b[ql + l] & 0xf) + (b[qh + l] & u1 ? 16 : 0))) - mm1;
      for (let l = 0; l < 32; l++) y[yo++] = f(d2 * ((b[ql + l] >> 4) + (b[qh + l] & u2 ? 16 : 0))) - mm2;
      u1 <<= 2;
      u2 <<= 2;
    }
  }
}

export function dequantizeQ6K(b: Uint8Array, y: Float32Array): void {
  for (let yo = 0, o = 0; yo < y.length; yo += QK_K, o += 210) {
    const d = getF16(b, o + 208);
    for (let n = 0, ql = o, qh = o + 128, sc = o + 192; n < QK_K; n += 128, ql += 64, qh += 32, sc += 8) {
      for (let l = 0; l < 32; l++) {
        const is = l >> 4;
        const h = b[qh + l];
        const q1 = ((b[ql + l] & 0xf) | ((h & 3) << 4)) - 32;
        const q2 = ((b[ql + l + 32] & 0xf) | (((h >> 2) & 3) << 4)) - 32;
        const q3 = ((b[ql + l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
        const q4 = ((b[ql + l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
        const s = (k: number) => (b[sc + is + k] << 24) >> 24; // int8 scales
        y[yo + n + l] = f(f(d * s(0)) * q1);
        y[yo + n + l + 32] = f(f(d * s(2)) * q2);
        y[yo + n + l + 64] = f(f(d * s(4)) * q3);
        y[yo + n + l + 96] = f(f(d * s(6)) * q4);
      }
    }
  }
}
