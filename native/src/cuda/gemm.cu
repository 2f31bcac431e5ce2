// BF16 GEMM of libmixtile-cuda: y[m][n] = x[m][k] w[n][k]^T with f32 accumulation. m = 1 (decode)
// goes to our own bandwidth-bound kernel (a warp per row of w); larger m to cuBLAS (cublasGemmEx),
// which is built in only where CMake found it (MIXTILE_CUDA_CUBLAS). Without cuBLAS our kernel serves
// every m (correct, but it re-reads w once per 8 rows of x: a fallback, not a prefill path).
#include <cstdlib>

#include "common.cuh"

#ifdef MIXTILE_CUDA_CUBLAS
#include <cublas_v2.h>
#endif

namespace mixtile::cuda {

// Up to this many rows of x our kernel is used when cuBLAS is present. Measured on the H100 with
// `mixtile-cuda-bench gemm` (2026-11-25), m = 1, ours vs cuBLAS: q_proj 10.8 vs 9.9 us, k/v_proj 6.5 vs
// 9.2, o_proj 14.2 vs 15.0, router 6.4 vs 7.7 (a decode layer: 44 vs 51 us); at m = 8 cuBLAS wins 2-3x
// (ours re-reads x from L1 per row of w). MIXTILE_CUDA_GEMV_MAX_M overrides it (0 = always cuBLAS);
// MIXTILE_CUDA_NO_CUBLAS=1 = never cuBLAS.
constexpr int GEMV_MAX_M = 1;
constexpr int GEMV_MT = 8;  // rows of x per pass over w

// Warp per row `r` of w (= output column r); lanes stride k by 8 elements (16-byte loads); MT rows of x
// per pass, accumulated in registers, reduced across the warp at the end.
template <class TO>
__global__ void __launch_bounds__(256) gemv_bf16_kernel(const __nv_bfloat16* __restrict__ x,
                                                        const __nv_bfloat16* __restrict__ w, TO* __restrict__ y,
                                                        int64_t m, int64_t n, int64_t k, float beta) {
  const int lane = threadIdx.x % 32;
  const int64_t r = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (r >= n) return;  // whole warps leave together
  const __nv_bfloat16* wr = w + r * k;
  for (int64_t m0 = 0; m0 < m; m0 += GEMV_MT) {
    float acc[GEMV_MT];
#pragma unroll
    for (int j = 0; j < GEMV_MT; ++j) acc[j] = 0.f;
#pragma unroll 4
    for (int64_t kk = lane * 8; kk < k; kk += 256) {
      const uint4 wv = __ldg(reinterpret_cast<const uint4*>(wr + kk));
      const __nv_bfloat162* w2 = reinterpret_cast<const __nv_bfloat162*>(&wv);
      float2 wf[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) wf[e] = __bfloat1622float2(w2[e]);
#pragma unroll
      for (int j = 0; j < GEMV_MT; ++j) {
        if (m0 + j < m) {
          const uint4 xv = __ldg(reinterpret_cast<const uint4*>(x + (m0 + j) * k + kk));
          const __nv_bfloat162* x2 = reinterpret_cast<const __nv_bfloat162*>(&xv);
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const float2 xf = __bfloat1622float2(x2[e]);
            acc[j] += xf.x * wf[e].x + xf.y * wf[e].y;
          }
        }
      }
    }
#pragma unroll
    for (int j = 0; j < GEMV_MT; ++j) acc[j] = warp_sum(acc[j]);
    if (lane < GEMV_MT && m0 + lane < m) {
      float v = 0.f;
#pragma unroll
      for (int j = 0; j < GEMV_MT; ++j)
        if (j == lane) v = acc[j];  // compile-time indices keep acc in registers
      TO* dst = y + (m0 + lane) * n + r;
      if (beta != 0.f) v += beta * to_f32<TO>(*dst);
      *dst = from_f32<TO>(v);
    }
  }
}

}  // namespace mixtile::cuda

using namespace mixtile::cuda;

struct mxc_blas {
  int gemv_max_m = GEMV_MAX_M;
  bool use_cublas = false;
#ifdef MIXTILE_CUDA_CUBLAS
  cublasHandle_t h = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
#endif
  cudaStream_t stream = nullptr;
};

#ifdef MIXTILE_CUDA_CUBLAS
static mxc_status fail_blas(cublasStatus_t st, const char* where) {
  mxc_status s = st == CUBLAS_STATUS_ALLOC_FAILED ? MXC_ERR_OUT_OF_MEMORY
                 : st == CUBLAS_STATUS_NOT_SUPPORTED || st == CUBLAS_STATUS_ARCH_MISMATCH ? MXC_ERR_UNSUPPORTED
                                                                                          : MXC_ERR_CUDA;
  return fail(s, "%s: %s: %s", where, cublasGetStatusName(st), cublasGetStatusString(st));
}
#define MXC_BLAS(call, where)                                       \
  do {                                                              \
    cublasStatus_t st_ = (call);                                    \
    if (st_ != CUBLAS_STATUS_SUCCESS) return fail_blas(st_, where); \
  } while (0)
#endif

extern "C" {

int mxc_has_cublas(void) {
#ifdef MIXTILE_CUDA_CUBLAS
  return 1;
#else
  return 0;
#endif
}

mxc_status mxc_blas_create(mxc_blas** out, mxc_stream* s) {
  MXC_CHECK_ARG(out, "mxc_blas_create: null output pointer");
  *out = nullptr;
  auto* b = new mxc_blas();
  b->stream = stream_of(s);
  if (const char* e = std::getenv("MIXTILE_CUDA_GEMV_MAX_M")) b->gemv_max_m = std::atoi(e);
#ifdef MIXTILE_CUDA_CUBLAS
  const char* no = std::getenv("MIXTILE_CUDA_NO_CUBLAS");
  b->use_cublas = !(no && *no && *no != '0');
  if (b->use_cublas) {
    cublasStatus_t st = cublasCreate(&b->h);
    if (st != CUBLAS_STATUS_SUCCESS) {
      delete b;
      return fail_blas(st, "cublasCreate");
    }
    // A fixed workspace keeps cuBLAS from allocating during a forward (and makes it graph-capturable).
    b->workspace_bytes = size_t(32) << 20;
    if (mxc_malloc(&b->workspace, b->workspace_bytes) != MXC_OK) {  // counted in mxc_mem_usage
      cublasDestroy(b->h);
      delete b;
      return fail(MXC_ERR_OUT_OF_MEMORY, "mxc_blas_create: could not allocate the 32 MiB cuBLAS workspace");
    }
    cublasSetWorkspace(b->h, b->workspace, b->workspace_bytes);
    cublasSetStream(b->h, b->stream);
  }
#endif
  *out = b;
  return MXC_OK;
}

mxc_status mxc_blas_destroy(mxc_blas* b) {
  if (!b) return MXC_OK;
#ifdef MIXTILE_CUDA_CUBLAS
  if (b->h) cublasDestroy(b->h);
  if (b->workspace) mxc_free(b->workspace);
#endif
  delete b;
  return MXC_OK;
}

mxc_status mxc_blas_set_stream(mxc_blas* b, mxc_stream* s) {
  MXC_CHECK_ARG(b, "mxc_blas_set_stream: null handle");
  b->stream = stream_of(s);
#ifdef MIXTILE_CUDA_CUBLAS
  if (b->h) MXC_BLAS(cublasSetStream(b->h, b->stream), "cublasSetStream");
#endif
  return MXC_OK;
}

mxc_status mxc_gemm_bf16(mxc_blas* b, int64_t m, int64_t n, int64_t k, const uint16_t* x, const uint16_t* w, void* y,
                         mxc_dtype y_type, float beta) {
  MXC_CHECK_ARG(b && x && w && y, "mxc_gemm_bf16: null pointer");
  MXC_CHECK_ARG(m >= 0 && n > 0 && k > 0 && m < (1ll << 31) && n < (1ll << 31) && k < (1ll << 31),
                "mxc_gemm_bf16: bad shape m=%lld n=%lld k=%lld", (long long)m, (long long)n, (long long)k);
  MXC_CHECK_ARG(y_type == MXC_F32 || y_type == MXC_BF16, "mxc_gemm_bf16: y_type must be F32 or BF16");
  if (m == 0) return MXC_OK;
  const bool own_ok = k % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(w) % 16 == 0;
  if (own_ok && (!b->use_cublas || m <= b->gemv_max_m)) {
    const int64_t blocks = (n + 7) / 8;
    MXC_CHECK_ARG(blocks < (1ll << 31), "mxc_gemm_bf16: n too large");
    auto* xb = reinterpret_cast<const __nv_bfloat16*>(x);
    auto* wb = reinterpret_cast<const __nv_bfloat16*>(w);
    if (y_type == MXC_F32)
      gemv_bf16_kernel<float><<<unsigned(blocks), 256, 0, b->stream>>>(xb, wb, static_cast<float*>(y), m, n, k, beta);
    else
      gemv_bf16_kernel<__nv_bfloat16>
          <<<unsigned(blocks), 256, 0, b->stream>>>(xb, wb, static_cast<__nv_bfloat16*>(y), m, n, k, beta);
    return check_launch("mxc_gemm_bf16 (gemv)");
  }
#ifdef MIXTILE_CUDA_CUBLAS
  if (b->use_cublas) {
    // Row-major y[m][n] = x[m][k] w[n][k]^T is column-major y^T[n][m] = (w^T)^T[n][k] x^T[k][m]:
    // A = w (stored k x n column-major, transposed), B = x (k x m column-major).
    float alpha = 1.f;
    MXC_BLAS(cublasGemmEx(b->h, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(m), int(k), &alpha, w, CUDA_R_16BF, int(k), x,
                          CUDA_R_16BF, int(k), &beta, y, y_type == MXC_F32 ? CUDA_R_32F : CUDA_R_16BF, int(n),
                          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
             "mxc_gemm_bf16 (cublasGemmEx)");
    return MXC_OK;
  }
#endif
  return fail(MXC_ERR_UNSUPPORTED,
              "mxc_gemm_bf16: without cuBLAS, k (%lld) must be a multiple of 8 and x, w 16-byte aligned "
              "(libmixtile-cuda %s)",
              (long long)k, mxc_has_cublas() ? "has cuBLAS but MIXTILE_CUDA_NO_CUBLAS is set" : "was built without cuBLAS");
}

}  // extern "C"
