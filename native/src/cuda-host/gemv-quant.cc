// Quantized GEMV of libmixtile-cuda-host (mxc_gemv_quant, mxc_gemv_quant_multi; ABI in ../cuda/mixtile-cuda.h):
// each row of w is widened with the addon's scalar dequantize_row (ggml's dequantize_row_* bit for bit, as the GPU
// kernel computes each weight), then dotted with every row of x (widened once per call) in f32. A multi call runs
// its jobs in turn, with the GPU library's argument checks (alignment included).
#include <vector>

#include "cpu/dequant/dequant.h"
#include "host-common.h"

using namespace mixtile::cuda_host;

namespace {

template <class TY>
void gemv_quant(int64_t m, int64_t n, int64_t k, const uint16_t* x, const uint8_t* w, mxc_dtype t, size_t row_bytes,
                TY* y, int64_t ldy, float beta) {
  std::vector<float> xf(size_t(m * k)), wf(static_cast<size_t>(k));
  for (size_t i = 0; i < xf.size(); ++i) xf[i] = bf16_to_f32(x[i]);
  for (int64_t r = 0; r < n; ++r) {
    mixtile::dequantize_row(mixtile::GgmlType(t), w + size_t(r) * row_bytes, wf.data(), k);
    for (int64_t i = 0; i < m; ++i) {
      float acc[8] = {};
      const float* xr = xf.data() + i * k;
      int64_t l = 0;
      for (; l + 8 <= k; l += 8)
        for (int u = 0; u < 8; ++u) acc[u] += xr[l + u] * wf[size_t(l + u)];
      float v = 0.f;
      for (int u = 0; u < 8; ++u) v += acc[u];
      for (; l < k; ++l) v += xr[l] * wf[size_t(l)];
      TY* dst = y + i * ldy + r;
      if (beta != 0.f) v += beta * to_f32(*dst);  // beta = 0 never reads y
      *dst = from_f32<TY>(v);
    }
  }
}

// Checks one job's arguments as the GPU library does.
mxc_status check_job(const mxc_gemv_job& j, int64_t k, int i) {
  MXH_CHECK_ARG(j.w && j.y, "mxc_gemv_quant: job %d: null pointer", i);
  MXH_CHECK_ARG(j.n > 0 && j.n < (1ll << 34) && j.ldy >= j.n, "mxc_gemv_quant: job %d: bad shape n=%lld ldy=%lld", i,
                (long long)j.n, (long long)j.ldy);
  const mxc_dtype t = j.w_type;
  MXH_CHECK_ARG(t == MXC_Q8_0 || t == MXC_Q4_K || t == MXC_Q5_K || t == MXC_Q6_K,
                "mxc_gemv_quant: job %d: weight type %d is not Q8_0, Q4_K, Q5_K or Q6_K", i, int(t));
  const size_t row_bytes = mxc_dtype_bytes(t, k);
  MXH_CHECK_ARG(row_bytes != 0, "mxc_gemv_quant: job %d: k = %lld is not a whole number of blocks of type %d", i,
                (long long)k, int(t));
  const uintptr_t align = (t == MXC_Q4_K || t == MXC_Q5_K) ? 16 : 2;
  MXH_CHECK_ARG(reinterpret_cast<uintptr_t>(j.w) % align == 0,
                "mxc_gemv_quant: job %d: weights of type %d must be %d-byte aligned", i, int(t), int(align));
  return MXC_OK;
}

// The device ranges a checked job reads and writes.
mxc_status check_job_ranges(const mxc_gemv_job& j, int64_t m, int64_t k, mxc_dtype y_type) {
  MXH_DEV(j.w, size_t(j.n) * mxc_dtype_bytes(j.w_type, k), "mxc_gemv_quant");
  const size_t ysz = y_type == MXC_F32 ? 4 : 2;
  MXH_DEV(j.y, (size_t((m - 1) * j.ldy) + size_t(j.n)) * ysz, "mxc_gemv_quant");
  return MXC_OK;
}

}  // namespace

extern "C" {

mxc_status mxc_gemv_quant_multi(int64_t m, int64_t k, const uint16_t* x, const mxc_gemv_job* jobs, int n_jobs,
                                mxc_dtype y_type, float beta, mxc_stream* s) {
  MXH_CHECK_ARG(x && jobs, "mxc_gemv_quant: null pointer");
  MXH_CHECK_ARG(n_jobs >= 1 && n_jobs <= MXC_GEMV_MAX_JOBS, "mxc_gemv_quant: %d jobs (1 to %d)", n_jobs,
                MXC_GEMV_MAX_JOBS);
  MXH_CHECK_ARG(m >= 0 && k > 0, "mxc_gemv_quant: bad shape m=%lld k=%lld", (long long)m, (long long)k);
  MXH_CHECK_ARG(reinterpret_cast<uintptr_t>(x) % 16 == 0, "mxc_gemv_quant: x must be 16-byte aligned");
  MXH_CHECK_ARG(y_type == MXC_F32 || y_type == MXC_BF16, "mxc_gemv_quant: y_type must be F32 or BF16");
  for (int i = 0; i < n_jobs; ++i) MXH_TRY(check_job(jobs[i], k, i));
  if (m == 0) return MXC_OK;
  MXH_DEV(x, size_t(m * k) * 2, "mxc_gemv_quant");
  for (int i = 0; i < n_jobs; ++i) MXH_TRY(check_job_ranges(jobs[i], m, k, y_type));
  std::vector<mxc_gemv_job> js(jobs, jobs + n_jobs);
  return submit(s, [=] {
    for (const mxc_gemv_job& j : js) {
      const auto* wb = static_cast<const uint8_t*>(j.w);
      const size_t row_bytes = mxc_dtype_bytes(j.w_type, k);
      if (y_type == MXC_F32) gemv_quant(m, j.n, k, x, wb, j.w_type, row_bytes, static_cast<float*>(j.y), j.ldy, beta);
      else gemv_quant(m, j.n, k, x, wb, j.w_type, row_bytes, static_cast<BF16*>(j.y), j.ldy, beta);
    }
  });
}

mxc_status mxc_gemv_quant(int64_t m, int64_t n, int64_t k, const uint16_t* x, const void* w, mxc_dtype w_type, void* y,
                          mxc_dtype y_type, int64_t ldy, float beta, mxc_stream* s) {
  const mxc_gemv_job job{w, w_type, n, y, ldy};
  return mxc_gemv_quant_multi(m, k, x, &job, 1, y_type, beta, s);
}

}  // extern "C"
