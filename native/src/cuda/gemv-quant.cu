// Quantized GEMV of libmixtile-cuda: y[i][r] = x[i][:] . w[r][:] with w kept in its GGUF blocks (Q8_0, Q4_K,
// Q5_K, Q6_K) in VRAM, dequantized in registers as it streams (decode projections, the lm_head's few rows).
// Memory-bound: a Q4_K row is 0.56 bytes per weight against BF16's 2, so a decode step reads ~3.5x fewer bytes.
//
// Layout of the work (the lanes split K, as llama.cpp's mmvq does; our own code): a warp per row of w, 4 rows
// a block. A lane's "unit" is 32 weights of its row: a quarter of a K-quant sub-block pair (Q4_K / Q5_K: 16
// bytes of quants, one 128-bit load), an eighth of a Q6_K super-block, or one Q8_0 block. Lane l takes units
// l, l + 32, ...; UNROLL (2 up to k = 2048, else 4) units of every lane are loaded before the first is used, so a
// row of up to 4096 weights is in flight at once (one memory latency a row, not one a super-block). A unit is
// four runs of 8 consecutive elements, each with one scale: weight = ds * q - dm with q a small integer, so a
// run's dot is ds * sum(q * x) - dm * sum(x), x (BF16, one 128-bit load a run) read once per unit for all its
// weights. x is loaded at its use (an L1 hit after a block's first warp): loading it with the weights cost
// registers, hence warps a multiprocessor, and measured slower on the H100 (bench/RESULTS.md).
// Several rows of x (m <= 8 a pass) reuse the unit's decoded q: the weights are read once for all m.
// Q6_K (210-byte blocks) and Q8_0 (34) are only 2-byte aligned: they are read as aligned 32-bit words and
// funnel-shifted into place. The integer-to-float step adds the quant byte to 2^23's mantissa (exact).
// Several weights that share x (q/k/v) run as one launch: a job per weight, the blocks over their rows in turn.
#include "common.cuh"
#include "ggml-blocks.cuh"

namespace mixtile::cuda {

namespace {

constexpr int WARPS = 4;   // rows per block (a warp a row)

// ---- loads: aligned 128-bit for Q4_K / Q5_K, 32-bit words realigned for the 2-byte aligned types ----
__device__ __forceinline__ uint4 ld128(const uint8_t* p) { return *reinterpret_cast<const uint4*>(p); }

// N + 1 aligned words covering N words at the 2-byte aligned p; the last only when p is not 4-byte aligned
// (it may lie past the row then, never past what the block's own bytes reach in their last word).
template <int N>
struct Words {
  uint32_t w[N + 1];
  __device__ __forceinline__ void load(const uint8_t* p) {
    const uint32_t* a = reinterpret_cast<const uint32_t*>(uintptr_t(p) & ~uintptr_t(3));
#pragma unroll
    for (int i = 0; i < N; ++i) w[i] = a[i];
    w[N] = (uintptr_t(p) & 2) ? a[N] : 0u;
  }
  // Word i of the N at p (sh: 16 when p was 2 mod 4, else 0).
  __device__ __forceinline__ uint32_t at(int i, int sh) const { return __funnelshift_r(w[i], w[i + 1], sh); }
};

__device__ __forceinline__ float half_bits(uint32_t h) { return __half2float(__ushort_as_half(uint16_t(h))); }

// Four bytes of w as floats, each byte minus `bias` (an integer): byte + 2^23 is exact in f32.
__device__ __forceinline__ void bytes_f32(uint32_t w, float bias, float* o) {
  const float b = 8388608.f + bias;
#pragma unroll
  for (int i = 0; i < 4; ++i) o[i] = __uint_as_float(__byte_perm(w, 0x4B000000u, 0x7440 + i)) - b;
}

// A decoded unit: weight(run r, element e) = ds[r] * q[8r + e] - dm[r] (dm only where HAS_MIN).
struct Decoded {
  float q[32], ds[4], dm[4];
};

template <int TYPE>
struct Unit;

// Q4_K super-block: d, dmin (f16), scales[12], qs[128]. Unit g (0..7) of super-block t: chunk c = g / 2 (64
// elements), bytes 16 (g % 2) .. + 16 of its 32: low nibbles are elements 64c + 16 (g % 2) + i (sub-block
// 2c), high nibbles the same + 32 (sub-block 2c + 1).
__device__ __forceinline__ void scale_min_words(uint4 h, int is, float d, float dmin, float* ds, float* dm) {
  const int sh = 8 * (is & 3);  // ggml's get_scale_min_k4 with the 12 bytes as words h.y, h.z, h.w
  const uint32_t a = (h.y >> sh) & 0xFF, b = (h.z >> sh) & 0xFF, c = (h.w >> sh) & 0xFF;
  const uint32_t s = is < 4 ? (a & 63) : ((c & 0xF) | ((a >> 6) << 4));
  const uint32_t m = is < 4 ? (b & 63) : ((c >> 4) | ((b >> 6) << 4));
  *ds = d * float(s);
  *dm = dmin * float(m);
}

template <>
struct Unit<MXC_Q4_K> {
  static constexpr bool HAS_MIN = true;
  uint4 hdr, qs;
  __device__ __forceinline__ void load(const uint8_t* row, int64_t u) {
    const uint8_t* b = row + (u >> 3) * Q4_K_BYTES;
    hdr = ld128(b);
    qs = ld128(b + 16 + 16 * (u & 7));
  }
  __device__ static __forceinline__ int64_t run_at(int64_t u, int r) {
    return (u >> 3) * QK_K + 32 * (u & 7) - 16 * (u & 1) + 8 * (r & 1) + 32 * (r >> 1);  // 64c + 16 (g % 2)
  }
  __device__ __forceinline__ void decode(int64_t u, Decoded& o) const {
    const int c = int(u & 7) >> 1;
    const float d = half_bits(hdr.x), dmin = half_bits(hdr.x >> 16);
    float ds0, dm0, ds1, dm1;
    scale_min_words(hdr, 2 * c, d, dmin, &ds0, &dm0);
    scale_min_words(hdr, 2 * c + 1, d, dmin, &ds1, &dm1);
    o.ds[0] = o.ds[1] = ds0;
    o.ds[2] = o.ds[3] = ds1;
    o.dm[0] = o.dm[1] = dm0;
    o.dm[2] = o.dm[3] = dm1;
    const uint32_t w[4] = {qs.x, qs.y, qs.z, qs.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      bytes_f32(w[i] & 0x0F0F0F0Fu, 0.f, o.q + 4 * i);             // runs 0, 1
      bytes_f32((w[i] >> 4) & 0x0F0F0F0Fu, 0.f, o.q + 16 + 4 * i);  // runs 2, 3
    }
  }
};

// Q5_K: d, dmin, scales[12], qh[32], qs[128]; as Q4_K plus a fifth bit: qh byte 16 (g % 2) + i, bit 2c for the
// low nibble, 2c + 1 for the high.
template <>
struct Unit<MXC_Q5_K> {
  static constexpr bool HAS_MIN = true;
  uint4 hdr, qh, qs;
  __device__ __forceinline__ void load(const uint8_t* row, int64_t u) {
    const uint8_t* b = row + (u >> 3) * Q5_K_BYTES;
    hdr = ld128(b);
    qh = ld128(b + 16 + 16 * (u & 1));
    qs = ld128(b + 48 + 16 * (u & 7));
  }
  __device__ static __forceinline__ int64_t run_at(int64_t u, int r) { return Unit<MXC_Q4_K>::run_at(u, r); }
  __device__ __forceinline__ void decode(int64_t u, Decoded& o) const {
    const int c = int(u & 7) >> 1;
    const float d = half_bits(hdr.x), dmin = half_bits(hdr.x >> 16);
    float ds0, dm0, ds1, dm1;
    scale_min_words(hdr, 2 * c, d, dmin, &ds0, &dm0);
    scale_min_words(hdr, 2 * c + 1, d, dmin, &ds1, &dm1);
    o.ds[0] = o.ds[1] = ds0;
    o.ds[2] = o.ds[3] = ds1;
    o.dm[0] = o.dm[1] = dm0;
    o.dm[2] = o.dm[3] = dm1;
    const uint32_t w[4] = {qs.x, qs.y, qs.z, qs.w}, h[4] = {qh.x, qh.y, qh.z, qh.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint32_t lo = (w[i] & 0x0F0F0F0Fu) | (((h[i] >> (2 * c)) & 0x01010101u) << 4);
      const uint32_t hi = ((w[i] >> 4) & 0x0F0F0F0Fu) | (((h[i] >> (2 * c + 1)) & 0x01010101u) << 4);
      bytes_f32(lo, 0.f, o.q + 4 * i);
      bytes_f32(hi, 0.f, o.q + 16 + 4 * i);
    }
  }
};

// Q6_K: ql[128], qh[64], scales[16] (int8), d. Unit j (0..7) of super-block t: half h = j / 4, l0 = 8 (j % 4);
// run r is elements 128h + l0 + 32r + e (e < 8) from ql[64h + l0 + e] (+32 for runs 1, 3; the high nibble for
// runs 2, 3) and bits 2r of qh[32h + l0 + e], scale scales[8h + l0 / 16 + 2r]; weight d * scale * (q - 32).
template <>
struct Unit<MXC_Q6_K> {
  static constexpr bool HAS_MIN = false;
  Words<2> a, b, h, sc;
  uint32_t d;
  int sh;
  __device__ __forceinline__ void load(const uint8_t* row, int64_t u) {
    const uint8_t* blk = row + (u >> 3) * Q6_K_BYTES;
    const int j = int(u & 7), hh = j >> 2, l0 = 8 * (j & 3);
    a.load(blk + 64 * hh + l0);
    b.load(blk + 64 * hh + 32 + l0);
    h.load(blk + 128 + 32 * hh + l0);
    sc.load(blk + 192 + 8 * hh);
    d = *reinterpret_cast<const uint16_t*>(blk + 208);
    sh = (uintptr_t(blk) & 2) ? 16 : 0;  // every offset above is a multiple of 8
  }
  __device__ static __forceinline__ int64_t run_at(int64_t u, int r) {
    const int j = int(u & 7);
    return (u >> 3) * QK_K + 128 * (j >> 2) + 8 * (j & 3) + 32 * r;
  }
  __device__ __forceinline__ void decode(int64_t u, Decoded& o) const {
    const float df = half_bits(d);
    const int is = (int(u & 3) * 8) / 16;  // l0 / 16
    const uint32_t s0 = sc.at(0, sh), s1 = sc.at(1, sh);
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int byte = is + 2 * r;  // 0..7: scales[8h + byte]
      const uint32_t sw = byte < 4 ? s0 : s1;
      o.ds[r] = df * float(int8_t((sw >> (8 * (byte & 3))) & 0xFF));
      o.dm[r] = 0.f;
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const uint32_t qa = a.at(i, sh), qb = b.at(i, sh), qh = h.at(i, sh);
      bytes_f32((qa & 0x0F0F0F0Fu) | ((qh << 4) & 0x30303030u), 32.f, o.q + 0 + 4 * i);
      bytes_f32((qb & 0x0F0F0F0Fu) | ((qh << 2) & 0x30303030u), 32.f, o.q + 8 + 4 * i);
      bytes_f32(((qa >> 4) & 0x0F0F0F0Fu) | (qh & 0x30303030u), 32.f, o.q + 16 + 4 * i);
      bytes_f32(((qb >> 4) & 0x0F0F0F0Fu) | ((qh >> 2) & 0x30303030u), 32.f, o.q + 24 + 4 * i);
    }
  }
};

// Q8_0: d (f16), qs[32] (int8); a unit is one block, run r its bytes 8r .. 8r + 7.
template <>
struct Unit<MXC_Q8_0> {
  static constexpr bool HAS_MIN = false;
  Words<8> qs;
  uint32_t d;
  int sh;
  __device__ __forceinline__ void load(const uint8_t* row, int64_t u) {
    const uint8_t* blk = row + u * Q8_0_BYTES;
    d = *reinterpret_cast<const uint16_t*>(blk);
    qs.load(blk + 2);
    sh = (uintptr_t(blk) & 2) ? 0 : 16;  // blk + 2's offset
  }
  __device__ static __forceinline__ int64_t run_at(int64_t u, int r) { return u * QK8_0 + 8 * r; }
  __device__ __forceinline__ void decode(int64_t, Decoded& o) const {
    const float df = half_bits(d);
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      o.ds[r] = df;
      o.dm[r] = 0.f;
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) bytes_f32(qs.at(i, sh) ^ 0x80808080u, 128.f, o.q + 4 * i);  // int8 + 128 as a byte
  }
};

// One weight of a launch: n rows of row_bytes at w, y[i * ldy + r].
struct Job {
  const uint8_t* w;
  void* y;
  int64_t n, ldy;
  size_t row_bytes;
  int type;
};
struct Jobs {
  Job job[MXC_GEMV_MAX_JOBS];
  int64_t row_end[MXC_GEMV_MAX_JOBS];  // rows of jobs 0..i together
  int count;
};

// Row r of job jb for MT rows of x a pass (lanes 0..MT-1 write them).
template <int TYPE, int MT, int UNROLL, class TO>
__device__ __forceinline__ void row_dot(const Job& jb, int64_t r, const __nv_bfloat16* __restrict__ x, int64_t m,
                                        int64_t k, float beta) {
  using U = Unit<TYPE>;
  const int lane = threadIdx.x % 32;
  const uint8_t* row = jb.w + size_t(r) * jb.row_bytes;
  const int64_t units = k / 32;
  for (int64_t m0 = 0; m0 < m; m0 += MT) {
    float acc[MT];
#pragma unroll
    for (int j = 0; j < MT; ++j) acc[j] = 0.f;
    for (int64_t u0 = lane; u0 < units; u0 += 32 * UNROLL) {
      U raw[UNROLL];
#pragma unroll
      for (int i = 0; i < UNROLL; ++i)
        if (u0 + 32 * i < units) raw[i].load(row, u0 + 32 * i);
#pragma unroll
      for (int i = 0; i < UNROLL; ++i) {
        const int64_t u = u0 + 32 * i;
        if (u >= units) break;
        Decoded dq;
        raw[i].decode(u, dq);
#pragma unroll
        for (int j = 0; j < MT; ++j) {
          if (MT > 1 && m0 + j >= m) break;
          const __nv_bfloat16* xr = x + (m0 + j) * k;
          float part = 0.f;
#pragma unroll
          for (int rr = 0; rr < 4; ++rr) {
            const uint4 xv = ld128(reinterpret_cast<const uint8_t*>(xr + U::run_at(u, rr)));
            const uint32_t xw[4] = {xv.x, xv.y, xv.z, xv.w};
            float dot = 0.f, sx = 0.f;
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              const float x0 = __uint_as_float(xw[e] << 16), x1 = __uint_as_float(xw[e] & 0xFFFF0000u);
              dot = fmaf(dq.q[8 * rr + 2 * e], x0, dot);
              dot = fmaf(dq.q[8 * rr + 2 * e + 1], x1, dot);
              if (U::HAS_MIN) sx += x0 + x1;
            }
            part = fmaf(dq.ds[rr], dot, part);
            if (U::HAS_MIN) part = fmaf(-dq.dm[rr], sx, part);
          }
          acc[j] += part;
        }
      }
    }
#pragma unroll
    for (int j = 0; j < MT; ++j) acc[j] = warp_sum(acc[j]);
    if (lane < MT && m0 + lane < m) {
      float v = 0.f;
#pragma unroll
      for (int j = 0; j < MT; ++j)
        if (j == lane) v = acc[j];  // compile-time indices keep acc in registers
      TO* dst = static_cast<TO*>(jb.y) + (m0 + lane) * jb.ldy + r;
      if (beta != 0.f) v += beta * to_f32<TO>(*dst);
      *dst = from_f32<TO>(v);
    }
  }
}

template <int MT, int UNROLL, class TO>
__global__ void __launch_bounds__(WARPS * 32) gemv_quant_kernel(const Jobs jobs, const __nv_bfloat16* __restrict__ x,
                                                                int64_t m, int64_t k, float beta) {
  const int64_t gr = int64_t(blockIdx.x) * WARPS + threadIdx.x / 32;  // row of all the jobs' rows in turn
  if (gr >= jobs.row_end[jobs.count - 1]) return;                        // whole warps leave together
  Job jb = jobs.job[0];
  int64_t r = gr;
#pragma unroll
  for (int i = 1; i < MXC_GEMV_MAX_JOBS; ++i)  // compile-time indices: the jobs stay kernel parameters
    if (i < jobs.count && gr >= jobs.row_end[i - 1]) {
      jb = jobs.job[i];
      r = gr - jobs.row_end[i - 1];
    }
  switch (jb.type) {  // the same for the whole warp
    case MXC_Q4_K: row_dot<MXC_Q4_K, MT, UNROLL, TO>(jb, r, x, m, k, beta); break;
    case MXC_Q5_K: row_dot<MXC_Q5_K, MT, UNROLL, TO>(jb, r, x, m, k, beta); break;
    case MXC_Q6_K: row_dot<MXC_Q6_K, MT, UNROLL, TO>(jb, r, x, m, k, beta); break;
    default: row_dot<MXC_Q8_0, MT, UNROLL, TO>(jb, r, x, m, k, beta); break;
  }
}

template <int UNROLL, class TO>
void launch_m(const Jobs& jobs, const __nv_bfloat16* x, int64_t m, int64_t k, float beta, cudaStream_t st) {
  const unsigned blocks = unsigned((jobs.row_end[jobs.count - 1] + WARPS - 1) / WARPS);
  if (m == 1) gemv_quant_kernel<1, UNROLL, TO><<<blocks, WARPS * 32, 0, st>>>(jobs, x, m, k, beta);
  else if (m == 2) gemv_quant_kernel<2, UNROLL, TO><<<blocks, WARPS * 32, 0, st>>>(jobs, x, m, k, beta);
  else if (m <= 4) gemv_quant_kernel<4, UNROLL, TO><<<blocks, WARPS * 32, 0, st>>>(jobs, x, m, k, beta);
  else gemv_quant_kernel<8, UNROLL, TO><<<blocks, WARPS * 32, 0, st>>>(jobs, x, m, k, beta);
}

// Rows of up to 2048 weights (2 units a lane) take the 2-unit kernel: fewer registers, more warps a multiprocessor.
template <class TO>
void launch(const Jobs& jobs, const __nv_bfloat16* x, int64_t m, int64_t k, float beta, cudaStream_t st) {
  if (k <= 2 * 32 * 32) launch_m<2, TO>(jobs, x, m, k, beta, st);
  else launch_m<4, TO>(jobs, x, m, k, beta, st);
}

// Checks one job against the shared arguments; fills j.
mxc_status job_of(const mxc_gemv_job& in, int64_t k, int i, Job* j) {
  MXC_CHECK_ARG(in.w && in.y, "mxc_gemv_quant: job %d: null pointer", i);
  MXC_CHECK_ARG(in.n > 0 && in.n < (1ll << 34) && in.ldy >= in.n, "mxc_gemv_quant: job %d: bad shape n=%lld ldy=%lld",
                i, (long long)in.n, (long long)in.ldy);
  const mxc_dtype t = in.w_type;
  MXC_CHECK_ARG(t == MXC_Q8_0 || t == MXC_Q4_K || t == MXC_Q5_K || t == MXC_Q6_K,
                "mxc_gemv_quant: job %d: weight type %d is not Q8_0, Q4_K, Q5_K or Q6_K", i, int(t));
  const size_t row_bytes = mxc_dtype_bytes(t, k);
  MXC_CHECK_ARG(row_bytes != 0, "mxc_gemv_quant: job %d: k = %lld is not a whole number of blocks of type %d", i,
                (long long)k, int(t));
  const uintptr_t align = (t == MXC_Q4_K || t == MXC_Q5_K) ? 16 : 2;
  MXC_CHECK_ARG(reinterpret_cast<uintptr_t>(in.w) % align == 0,
                "mxc_gemv_quant: job %d: weights of type %d must be %d-byte aligned", i, int(t), int(align));
  *j = Job{static_cast<const uint8_t*>(in.w), in.y, in.n, in.ldy, row_bytes, int(t)};
  return MXC_OK;
}

}  // namespace

}  // namespace mixtile::cuda

using namespace mixtile::cuda;

extern "C" {

mxc_status mxc_gemv_quant_multi(int64_t m, int64_t k, const uint16_t* x, const mxc_gemv_job* jobs, int n_jobs,
                                mxc_dtype y_type, float beta, mxc_stream* s) {
  MXC_CHECK_ARG(x && jobs, "mxc_gemv_quant: null pointer");
  MXC_CHECK_ARG(n_jobs >= 1 && n_jobs <= MXC_GEMV_MAX_JOBS, "mxc_gemv_quant: %d jobs (1 to %d)", n_jobs,
                MXC_GEMV_MAX_JOBS);
  MXC_CHECK_ARG(m >= 0 && k > 0, "mxc_gemv_quant: bad shape m=%lld k=%lld", (long long)m, (long long)k);
  MXC_CHECK_ARG(reinterpret_cast<uintptr_t>(x) % 16 == 0, "mxc_gemv_quant: x must be 16-byte aligned");
  MXC_CHECK_ARG(y_type == MXC_F32 || y_type == MXC_BF16, "mxc_gemv_quant: y_type must be F32 or BF16");
  Jobs js{};
  js.count = n_jobs;
  int64_t rows = 0;
  for (int i = 0; i < n_jobs; ++i) {
    const mxc_status st = job_of(jobs[i], k, i, &js.job[i]);
    if (st != MXC_OK) return st;
    rows += jobs[i].n;
    js.row_end[i] = rows;
  }
  MXC_CHECK_ARG(rows / WARPS < (1ll << 31), "mxc_gemv_quant: %lld rows in one launch", (long long)rows);
  if (m == 0) return MXC_OK;
  const auto* xb = reinterpret_cast<const __nv_bfloat16*>(x);
  if (y_type == MXC_F32) launch<float>(js, xb, m, k, beta, stream_of(s));
  else launch<__nv_bfloat16>(js, xb, m, k, beta, stream_of(s));
  return check_launch("mxc_gemv_quant");
}

mxc_status mxc_gemv_quant(int64_t m, int64_t n, int64_t k, const uint16_t* x, const void* w, mxc_dtype w_type, void* y,
                          mxc_dtype y_type, int64_t ldy, float beta, mxc_stream* s) {
  const mxc_gemv_job job{w, w_type, n, y, ldy};
  return mxc_gemv_quant_multi(m, k, x, &job, 1, y_type, beta, s);
}

}  // extern "C"
