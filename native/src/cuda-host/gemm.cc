// GEMMs of libmixtile-cuda-host: BF16 y[m][n] = x[m][k] w[n][k]^T (+ beta y), f32 accumulation, y F32 or
// BF16; and the all-f32 one (mxc_gemm_f32, the MoE router). Serves every m, as the real library does with cuBLAS (mxc_has_cublas() = 1); a handle created
// with MIXTILE_CUDA_NO_CUBLAS=1 keeps the real library's no-cuBLAS limits (k % 8 == 0, 16-byte aligned
// x and w) so code that depends on them fails here as on such a build.
// Speed matters only enough for tiny test models, whose lm_head is [151669][hidden]: w is streamed
// once, 4 rows at a time widened to f32, each dotted with every row of x (widened once per call);
// eight partial sums per dot let the compiler use SIMD without reassociating.
#include <cstdlib>
#include <type_traits>
#include <vector>

#include "host-common.h"

struct mxc_blas {
  bool use_cublas = true;  // false: the real library's own-kernel limits apply
  mxc_stream* stream = nullptr;
};

using namespace mixtile::cuda_host;

namespace {

// The real library's cuBLAS workspace, counted against VRAM as it is there.
constexpr size_t CUBLAS_WORKSPACE_BYTES = size_t(32) << 20;
constexpr int WB = 4;  // rows of w per pass over x

void dot4(const float* x, const float* const w[WB], int64_t k, float out[WB]) {
  float acc[WB][8] = {};
  int64_t l = 0;
  for (; l + 8 <= k; l += 8)
    for (int u = 0; u < 8; ++u) {
      const float xv = x[l + u];
      for (int r = 0; r < WB; ++r) acc[r][u] += xv * w[r][l + u];
    }
  for (int r = 0; r < WB; ++r) {
    float sum = 0.f;
    for (int u = 0; u < 8; ++u) sum += acc[r][u];
    for (int64_t t = l; t < k; ++t) sum += x[t] * w[r][t];
    out[r] = sum;
  }
}

// TW: uint16_t (BF16 bits, widened per block of WB rows) or float (used in place).
template <class TW, class TY>
void gemm(int64_t m, int64_t n, int64_t k, const float* xf, const TW* w, TY* y, float beta) {
  std::vector<float> wf(std::is_same_v<TW, float> ? 0 : size_t(WB * k));
  for (int64_t j0 = 0; j0 < n; j0 += WB) {
    const int rows = int(n - j0 < WB ? n - j0 : WB);
    const float* wr[WB];
    for (int r = 0; r < rows; ++r) {
      if constexpr (std::is_same_v<TW, float>) {
        wr[r] = w + (j0 + r) * k;
      } else {
        wr[r] = wf.data() + r * k;
        for (int64_t l = 0; l < k; ++l) wf[size_t(r * k + l)] = bf16_to_f32(w[(j0 + r) * k + l]);
      }
    }
    for (int r = rows; r < WB; ++r) wr[r] = wr[0];  // a short last block repeats a row; its results are dropped
    for (int64_t i = 0; i < m; ++i) {
      float acc[WB];
      dot4(xf + i * k, wr, k, acc);
      for (int r = 0; r < rows; ++r) {
        TY* dst = y + i * n + j0 + r;
        float v = acc[r];
        if (beta != 0.f) v += beta * to_f32(*dst);  // beta = 0 never reads y (it may hold NaN)
        *dst = from_f32<TY>(v);
      }
    }
  }
}

template <class TY>
void gemm_bf16(int64_t m, int64_t n, int64_t k, const uint16_t* x, const uint16_t* w, TY* y, float beta) {
  std::vector<float> xf(size_t(m * k));
  for (size_t i = 0; i < xf.size(); ++i) xf[i] = bf16_to_f32(x[i]);
  gemm(m, n, k, xf.data(), w, y, beta);
}

}  // namespace

extern "C" {

mxc_status mxc_blas_create(mxc_blas** out, mxc_stream* s) {
  MXH_CHECK_ARG(out, "mxc_blas_create: null output pointer");
  *out = nullptr;
  const char* no = std::getenv("MIXTILE_CUDA_NO_CUBLAS");
  const bool use_cublas = !(no && *no && *no != '0');
  if (use_cublas && vram_reserve(CUBLAS_WORKSPACE_BYTES, "mxc_blas_create") != MXC_OK)
    return fail(MXC_ERR_OUT_OF_MEMORY, "mxc_blas_create: could not allocate the 32 MiB cuBLAS workspace");
  *out = new mxc_blas{use_cublas, s};
  return MXC_OK;
}

mxc_status mxc_blas_destroy(mxc_blas* b) {
  if (!b) return MXC_OK;
  if (b->use_cublas) vram_release(CUBLAS_WORKSPACE_BYTES);
  delete b;
  return MXC_OK;
}

mxc_status mxc_blas_set_stream(mxc_blas* b, mxc_stream* s) {
  MXH_CHECK_ARG(b, "mxc_blas_set_stream: null handle");
  b->stream = s;
  return MXC_OK;
}

mxc_status mxc_gemm_bf16(mxc_blas* b, int64_t m, int64_t n, int64_t k, const uint16_t* x, const uint16_t* w, void* y,
                         mxc_dtype y_type, float beta) {
  MXH_CHECK_ARG(b && x && w && y, "mxc_gemm_bf16: null pointer");
  MXH_CHECK_ARG(m >= 0 && n > 0 && k > 0 && m < (1ll << 31) && n < (1ll << 31) && k < (1ll << 31),
                "mxc_gemm_bf16: bad shape m=%lld n=%lld k=%lld", (long long)m, (long long)n, (long long)k);
  MXH_CHECK_ARG(y_type == MXC_F32 || y_type == MXC_BF16, "mxc_gemm_bf16: y_type must be F32 or BF16");
  if (m == 0) return MXC_OK;
  const bool own_ok = k % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(w) % 16 == 0;
  if (!b->use_cublas && !own_ok)
    return fail(MXC_ERR_UNSUPPORTED,
                "mxc_gemm_bf16: without cuBLAS, k (%lld) must be a multiple of 8 and x, w 16-byte aligned "
                "(libmixtile-cuda has cuBLAS but MIXTILE_CUDA_NO_CUBLAS is set)",
                (long long)k);
  MXH_DEV(x, size_t(m * k) * 2, "mxc_gemm_bf16");
  MXH_DEV(w, size_t(n * k) * 2, "mxc_gemm_bf16");
  MXH_DEV(y, size_t(m * n) * (y_type == MXC_F32 ? 4 : 2), "mxc_gemm_bf16");
  if (y_type == MXC_F32) return submit(b->stream, [=] { gemm_bf16(m, n, k, x, w, static_cast<float*>(y), beta); });
  return submit(b->stream, [=] { gemm_bf16(m, n, k, x, w, static_cast<BF16*>(y), beta); });
}

mxc_status mxc_gemm_f32(int64_t m, int64_t n, int64_t k, const float* x, const float* w, float* y, mxc_stream* s) {
  MXH_CHECK_ARG(x && w && y, "mxc_gemm_f32: null pointer");
  MXH_CHECK_ARG(m >= 0 && n > 0 && k > 0 && n < (1ll << 31) && k < (1ll << 31),
                "mxc_gemm_f32: bad shape m=%lld n=%lld k=%lld", (long long)m, (long long)n, (long long)k);
  if (m == 0) return MXC_OK;
  MXH_DEV(x, size_t(m * k) * 4, "mxc_gemm_f32");
  MXH_DEV(w, size_t(n * k) * 4, "mxc_gemm_f32");
  MXH_DEV(y, size_t(m * n) * 4, "mxc_gemm_f32");
  return submit(s, [=] { gemm(m, n, k, x, w, y, 0.f); });
}

}  // extern "C"
