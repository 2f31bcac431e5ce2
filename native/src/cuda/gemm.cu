// BF16 GEMM of libmixtile-cuda through cuBLAS (cublasGemmEx, f32 accumulation). Built with cuBLAS
// only where CMake found it (MIXTILE_CUDA_CUBLAS); elsewhere every entry returns MXC_ERR_UNSUPPORTED.
#include "common.cuh"

#ifdef MIXTILE_CUDA_CUBLAS
#include <cublas_v2.h>
#endif

using namespace mixtile::cuda;

#ifdef MIXTILE_CUDA_CUBLAS
struct mxc_blas {
  cublasHandle_t h = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

static mxc_status fail_blas(cublasStatus_t st, const char* where) {
  mxc_status s = st == CUBLAS_STATUS_ALLOC_FAILED ? MXC_ERR_OUT_OF_MEMORY
                 : st == CUBLAS_STATUS_NOT_SUPPORTED || st == CUBLAS_STATUS_ARCH_MISMATCH ? MXC_ERR_UNSUPPORTED
                                                                                          : MXC_ERR_CUDA;
  return fail(s, "%s: %s: %s", where, cublasGetStatusName(st), cublasGetStatusString(st));
}
#define MXC_BLAS(call, where)                                   \
  do {                                                          \
    cublasStatus_t st_ = (call);                                \
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

#ifdef MIXTILE_CUDA_CUBLAS

mxc_status mxc_blas_create(mxc_blas** out, mxc_stream* s) {
  MXC_CHECK_ARG(out, "mxc_blas_create: null output pointer");
  auto* b = new mxc_blas();
  cublasStatus_t st = cublasCreate(&b->h);
  if (st != CUBLAS_STATUS_SUCCESS) {
    delete b;
    return fail_blas(st, "cublasCreate");
  }
  // A fixed workspace keeps cuBLAS from allocating during a forward (and makes it graph-capturable).
  b->workspace_bytes = size_t(32) << 20;
  if (cudaMalloc(&b->workspace, b->workspace_bytes) != cudaSuccess) {
    cudaGetLastError();
    cublasDestroy(b->h);
    delete b;
    return fail(MXC_ERR_OUT_OF_MEMORY, "mxc_blas_create: could not allocate the 32 MiB cuBLAS workspace");
  }
  cublasSetWorkspace(b->h, b->workspace, b->workspace_bytes);
  cublasSetStream(b->h, stream_of(s));
  *out = b;
  return MXC_OK;
}

mxc_status mxc_blas_destroy(mxc_blas* b) {
  if (!b) return MXC_OK;
  cublasDestroy(b->h);
  cudaFree(b->workspace);
  delete b;
  return MXC_OK;
}

mxc_status mxc_blas_set_stream(mxc_blas* b, mxc_stream* s) {
  MXC_CHECK_ARG(b, "mxc_blas_set_stream: null handle");
  MXC_BLAS(cublasSetStream(b->h, stream_of(s)), "cublasSetStream");
  return MXC_OK;
}

// Row-major y[m][n] = x[m][k] w[n][k]^T is column-major y^T[n][m] = (w^T)^T[n][k] x^T[k][m]:
// A = w (stored k x n column-major, transposed), B = x (k x m column-major).
mxc_status mxc_gemm_bf16(mxc_blas* b, int64_t m, int64_t n, int64_t k, const uint16_t* x, const uint16_t* w, void* y,
                         mxc_dtype y_type, float beta) {
  MXC_CHECK_ARG(b && x && w && y, "mxc_gemm_bf16: null pointer");
  MXC_CHECK_ARG(m >= 0 && n > 0 && k > 0 && m < (1ll << 31) && n < (1ll << 31) && k < (1ll << 31),
                "mxc_gemm_bf16: bad shape m=%lld n=%lld k=%lld", (long long)m, (long long)n, (long long)k);
  MXC_CHECK_ARG(y_type == MXC_F32 || y_type == MXC_BF16, "mxc_gemm_bf16: y_type must be F32 or BF16");
  if (m == 0) return MXC_OK;
  float alpha = 1.f;
  MXC_BLAS(cublasGemmEx(b->h, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(m), int(k), &alpha, w, CUDA_R_16BF, int(k), x,
                        CUDA_R_16BF, int(k), &beta, y, y_type == MXC_F32 ? CUDA_R_32F : CUDA_R_16BF, int(n),
                        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
           "mxc_gemm_bf16 (cublasGemmEx)");
  return MXC_OK;
}

#else

static mxc_status no_blas(const char* what) {
  return fail(MXC_ERR_UNSUPPORTED, "%s: libmixtile-cuda was built without cuBLAS (CMake found no CUDA::cublas); "
              "rebuild where the CUDA toolkit has cuBLAS", what);
}
mxc_status mxc_blas_create(mxc_blas** out, mxc_stream*) {
  if (out) *out = nullptr;
  return no_blas("mxc_blas_create");
}
mxc_status mxc_blas_destroy(mxc_blas*) { return MXC_OK; }
mxc_status mxc_blas_set_stream(mxc_blas*, mxc_stream*) { return no_blas("mxc_blas_set_stream"); }
mxc_status mxc_gemm_bf16(mxc_blas*, int64_t, int64_t, int64_t, const uint16_t*, const uint16_t*, void*, mxc_dtype,
                         float) {
  return no_blas("mxc_gemm_bf16");
}

#endif

}  // extern "C"
