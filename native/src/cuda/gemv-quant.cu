// Quantized GEMV of libmixtile-cuda: y[i][r] = x[i][:] . w[r][:] with w kept in its GGUF blocks (Q8_0, Q4_K,
// Q5_K, Q6_K) in VRAM, dequantized in registers as it streams (decode projections, the lm_head's few rows).
// Memory-bound: a Q4_K row is 0.56 bytes per weight against BF16's 2, so a decode step reads ~3.5x fewer bytes.
// A warp per row of w; a warp step covers one 256-element tile of the row (one K-quant super-block or eight
// Q8_0 blocks), each lane 8 weights computed as ggml's dequantize_row_* computes them (see dequant.cu).
#include "common.cuh"
#include "ggml-blocks.cuh"

namespace mixtile::cuda {

namespace {

constexpr int MT = 8;  // rows of x per pass over w

// Lane `l`'s 8 weights of tile t of a row (row bytes at wr), and their offsets within the tile. Returns false
// when the lane's weights lie past k (Q8_0 rows of k % 256 != 0; K-quant rows are whole tiles).
template <int TYPE>
__device__ __forceinline__ bool lane_weights(const uint8_t* __restrict__ wr, int64_t t, int64_t k, int l, float w[8],
                                             int pos[8]);

template <>
__device__ __forceinline__ bool lane_weights<MXC_Q8_0>(const uint8_t* __restrict__ wr, int64_t t, int64_t k, int l,
                                                       float w[8], int pos[8]) {
  const int blk = l / 4, p = l % 4;
  if (t * QK_K + blk * QK8_0 >= k) return false;
  const uint8_t* b = wr + (t * 8 + blk) * Q8_0_BYTES;
  const float d = half_at(b);
#pragma unroll
  for (int e = 0; e < 8; ++e) {
    w[e] = d * float(int8_t(b[2 + 8 * p + e]));
    pos[e] = blk * QK8_0 + 8 * p + e;
  }
  return true;
}

template <>
__device__ __forceinline__ bool lane_weights<MXC_Q4_K>(const uint8_t* __restrict__ wr, int64_t t, int64_t, int l,
                                                       float w[8], int pos[8]) {
  const int c = l / 8, g = l % 8;
  const uint8_t* b = wr + t * Q4_K_BYTES;
  float d0, m0, d1, m1;
  const float d = half_at(b), dmin = half_at(b + 2);
  scale_min_k4(b + 4, 2 * c, d, dmin, &d0, &m0);
  scale_min_k4(b + 4, 2 * c + 1, d, dmin, &d1, &m1);
  const uint32_t q = *reinterpret_cast<const uint32_t*>(b + 16 + 32 * c + 4 * g);  // super-blocks are 16-byte multiples
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const int byte = int((q >> (8 * e)) & 0xFF);
    w[e] = d0 * float(byte & 0xF) - m0;
    w[4 + e] = d1 * float(byte >> 4) - m1;
    pos[e] = 64 * c + 4 * g + e;
    pos[4 + e] = 64 * c + 32 + 4 * g + e;
  }
  return true;
}

template <>
__device__ __forceinline__ bool lane_weights<MXC_Q5_K>(const uint8_t* __restrict__ wr, int64_t t, int64_t, int l,
                                                       float w[8], int pos[8]) {
  const int c = l / 8, g = l % 8;
  const uint8_t* b = wr + t * Q5_K_BYTES;
  float d0, m0, d1, m1;
  const float d = half_at(b), dmin = half_at(b + 2);
  scale_min_k4(b + 4, 2 * c, d, dmin, &d0, &m0);
  scale_min_k4(b + 4, 2 * c + 1, d, dmin, &d1, &m1);
  const uint32_t h = *reinterpret_cast<const uint32_t*>(b + 16 + 4 * g);
  const uint32_t q = *reinterpret_cast<const uint32_t*>(b + 48 + 32 * c + 4 * g);
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const int byte = int((q >> (8 * e)) & 0xFF), hb = int((h >> (8 * e)) & 0xFF);
    w[e] = d0 * float((byte & 0xF) + (((hb >> (2 * c)) & 1) << 4)) - m0;
    w[4 + e] = d1 * float((byte >> 4) + (((hb >> (2 * c + 1)) & 1) << 4)) - m1;
    pos[e] = 64 * c + 4 * g + e;
    pos[4 + e] = 64 * c + 32 + 4 * g + e;
  }
  return true;
}

// Q6_K (ql[128] qh[64] scales[16] d): lane (h, g) takes elements 128h + 32qq + 2g + {0, 1} for qq = 0..3.
template <>
__device__ __forceinline__ bool lane_weights<MXC_Q6_K>(const uint8_t* __restrict__ wr, int64_t t, int64_t, int l,
                                                       float w[8], int pos[8]) {
  const int h = l / 16, g = l % 16;
  const uint8_t* b = wr + t * Q6_K_BYTES;
  const uint8_t* ql = b + 64 * h + 2 * g;
  const uint8_t* qh = b + 128 + 32 * h + 2 * g;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192) + 8 * h + g / 8;
  const float d = half_at(b + 208);
#pragma unroll
  for (int qq = 0; qq < 4; ++qq) {
    const float ds = d * float(sc[2 * qq]);
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      int lo = ql[e + 32 * (qq & 1)];
      lo = qq < 2 ? (lo & 0xF) : (lo >> 4);
      w[2 * qq + e] = ds * float((lo | (((qh[e] >> (2 * qq)) & 3) << 4)) - 32);
      pos[2 * qq + e] = 128 * h + 32 * qq + 2 * g + e;
    }
  }
  return true;
}

template <int TYPE, class TO>
__global__ void __launch_bounds__(256) gemv_quant_kernel(const __nv_bfloat16* __restrict__ x,
                                                         const uint8_t* __restrict__ w, size_t row_bytes,
                                                         TO* __restrict__ y, int64_t ldy, int64_t m, int64_t n,
                                                         int64_t k, float beta) {
  const int lane = threadIdx.x % 32;
  const int64_t r = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (r >= n) return;  // whole warps leave together
  const uint8_t* wr = w + size_t(r) * row_bytes;
  const int64_t tiles = (k + QK_K - 1) / QK_K;
  for (int64_t m0 = 0; m0 < m; m0 += MT) {
    float acc[MT];
#pragma unroll
    for (int j = 0; j < MT; ++j) acc[j] = 0.f;
#pragma unroll 2
    for (int64_t t = 0; t < tiles; ++t) {
      float wv[8];
      int pos[8];
      if (!lane_weights<TYPE>(wr, t, k, lane, wv, pos)) continue;
#pragma unroll
      for (int j = 0; j < MT; ++j) {
        if (m0 + j < m) {
          const __nv_bfloat16* xr = x + (m0 + j) * k + t * QK_K;
#pragma unroll
          for (int e = 0; e < 8; ++e) acc[j] += wv[e] * __bfloat162float(xr[pos[e]]);
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
      TO* dst = y + (m0 + lane) * ldy + r;
      if (beta != 0.f) v += beta * to_f32<TO>(*dst);
      *dst = from_f32<TO>(v);
    }
  }
}

template <int TYPE>
void launch(const __nv_bfloat16* x, const uint8_t* w, size_t row_bytes, void* y, mxc_dtype y_type, int64_t ldy,
            int64_t m, int64_t n, int64_t k, float beta, cudaStream_t st) {
  const unsigned blocks = unsigned((n + 7) / 8);
  if (y_type == MXC_F32)
    gemv_quant_kernel<TYPE, float><<<blocks, 256, 0, st>>>(x, w, row_bytes, static_cast<float*>(y), ldy, m, n, k, beta);
  else
    gemv_quant_kernel<TYPE, __nv_bfloat16>
        <<<blocks, 256, 0, st>>>(x, w, row_bytes, static_cast<__nv_bfloat16*>(y), ldy, m, n, k, beta);
}

}  // namespace

}  // namespace mixtile::cuda

using namespace mixtile::cuda;

extern "C" {

mxc_status mxc_gemv_quant(int64_t m, int64_t n, int64_t k, const uint16_t* x, const void* w, mxc_dtype w_type, void* y,
                          mxc_dtype y_type, int64_t ldy, float beta, mxc_stream* s) {
  MXC_CHECK_ARG(x && w && y, "mxc_gemv_quant: null pointer");
  MXC_CHECK_ARG(m >= 0 && n > 0 && k > 0 && n < (1ll << 34) && ldy >= n,
                "mxc_gemv_quant: bad shape m=%lld n=%lld k=%lld ldy=%lld", (long long)m, (long long)n, (long long)k,
                (long long)ldy);
  MXC_CHECK_ARG(w_type == MXC_Q8_0 || w_type == MXC_Q4_K || w_type == MXC_Q5_K || w_type == MXC_Q6_K,
                "mxc_gemv_quant: weight type %d is not Q8_0, Q4_K, Q5_K or Q6_K", int(w_type));
  MXC_CHECK_ARG(y_type == MXC_F32 || y_type == MXC_BF16, "mxc_gemv_quant: y_type must be F32 or BF16");
  const size_t row_bytes = mxc_dtype_bytes(w_type, k);
  MXC_CHECK_ARG(row_bytes != 0, "mxc_gemv_quant: k = %lld is not a whole number of blocks of type %d", (long long)k,
                int(w_type));
  MXC_CHECK_ARG(w_type == MXC_Q6_K || w_type == MXC_Q8_0 || reinterpret_cast<uintptr_t>(w) % 4 == 0,
                "mxc_gemv_quant: Q4_K / Q5_K weights must be 4-byte aligned");
  if (m == 0) return MXC_OK;
  const auto* xb = reinterpret_cast<const __nv_bfloat16*>(x);
  const auto* wb = static_cast<const uint8_t*>(w);
  cudaStream_t st = stream_of(s);
  switch (w_type) {
    case MXC_Q8_0: launch<MXC_Q8_0>(xb, wb, row_bytes, y, y_type, ldy, m, n, k, beta, st); break;
    case MXC_Q4_K: launch<MXC_Q4_K>(xb, wb, row_bytes, y, y_type, ldy, m, n, k, beta, st); break;
    case MXC_Q5_K: launch<MXC_Q5_K>(xb, wb, row_bytes, y, y_type, ldy, m, n, k, beta, st); break;
    case MXC_Q6_K: launch<MXC_Q6_K>(xb, wb, row_bytes, y, y_type, ldy, m, n, k, beta, st); break;
    default: break;
  }
  return check_launch("mxc_gemv_quant");
}

}  // extern "C"
