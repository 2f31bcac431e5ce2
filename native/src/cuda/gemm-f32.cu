// F32 GEMM of libmixtile-cuda for small, precision-sensitive products: the MoE router. Its logits pick
// discrete experts, so they are computed from the f32 hidden state and f32 router weights (as the CPU
// path and llama.cpp do) rather than through the BF16 GEMM, where rounding would flip near-tied experts.
// Bandwidth-bound (a warp per output column, up to 4 rows of x per pass); not meant for large m * n * k.
#include "common.cuh"

namespace mixtile::cuda {

constexpr int F32_MT = 4;  // rows of x per pass over a row of w

__global__ void __launch_bounds__(256) gemm_f32_kernel(const float* __restrict__ x, const float* __restrict__ w,
                                                       float* __restrict__ y, int64_t m, int64_t n, int64_t k) {
  const int lane = threadIdx.x % 32;
  const int64_t r = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (r >= n) return;
  const float* wr = w + r * k;
  for (int64_t m0 = int64_t(blockIdx.y) * F32_MT; m0 < m; m0 += int64_t(gridDim.y) * F32_MT) {
    float acc[F32_MT] = {0.f, 0.f, 0.f, 0.f};
    for (int64_t kk = lane; kk < k; kk += 32) {
      const float wv = __ldg(wr + kk);
#pragma unroll
      for (int j = 0; j < F32_MT; ++j)
        if (m0 + j < m) acc[j] += __ldg(x + (m0 + j) * k + kk) * wv;
    }
#pragma unroll
    for (int j = 0; j < F32_MT; ++j) {
      const float v = warp_sum(acc[j]);
      if (lane == 0 && m0 + j < m) y[(m0 + j) * n + r] = v;
    }
  }
}

}  // namespace mixtile::cuda

using namespace mixtile::cuda;

extern "C" {

mxc_status mxc_gemm_f32(int64_t m, int64_t n, int64_t k, const float* x, const float* w, float* y, mxc_stream* s) {
  MXC_CHECK_ARG(x && w && y, "mxc_gemm_f32: null pointer");
  MXC_CHECK_ARG(m >= 0 && n > 0 && k > 0 && n < (1ll << 31) && k < (1ll << 31),
                "mxc_gemm_f32: bad shape m=%lld n=%lld k=%lld", (long long)m, (long long)n, (long long)k);
  if (m == 0) return MXC_OK;
  const int64_t bx = (n + 7) / 8;
  const int64_t by = (m + F32_MT - 1) / F32_MT;
  MXC_CHECK_ARG(bx < (1ll << 31), "mxc_gemm_f32: n too large");
  dim3 grid(unsigned(bx), unsigned(by < 65535 ? by : 65535));
  gemm_f32_kernel<<<grid, 256, 0, stream_of(s)>>>(x, w, y, m, n, k);
  return check_launch("mxc_gemm_f32");
}

}  // extern "C"
