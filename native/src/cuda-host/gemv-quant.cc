// Quantized GEMV of libmixtile-cuda-host (mxc_gemv_quant, ABI in ../cuda/mixtile-cuda.h): each row of w is
// widened with the addon's scalar dequantize_row (ggml's dequantize_row_* bit for bit, as the GPU kernel
// computes each weight), then dotted with every row of x (widened once per call) in f32.
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

}  // namespace

extern "C" {

mxc_status mxc_gemv_quant(int64_t m, int64_t n, int64_t k, const uint16_t* x, const void* w, mxc_dtype w_type, void* y,
                          mxc_dtype y_type, int64_t ldy, float beta, mxc_stream* s) {
  MXH_CHECK_ARG(x && w && y, "mxc_gemv_quant: null pointer");
  MXH_CHECK_ARG(m >= 0 && n > 0 && k > 0 && n < (1ll << 34) && ldy >= n,
                "mxc_gemv_quant: bad shape m=%lld n=%lld k=%lld ldy=%lld", (long long)m, (long long)n, (long long)k,
                (long long)ldy);
  MXH_CHECK_ARG(w_type == MXC_Q8_0 || w_type == MXC_Q4_K || w_type == MXC_Q5_K || w_type == MXC_Q6_K,
                "mxc_gemv_quant: weight type %d is not Q8_0, Q4_K, Q5_K or Q6_K", int(w_type));
  MXH_CHECK_ARG(y_type == MXC_F32 || y_type == MXC_BF16, "mxc_gemv_quant: y_type must be F32 or BF16");
  const size_t row_bytes = mxc_dtype_bytes(w_type, k);
  MXH_CHECK_ARG(row_bytes != 0, "mxc_gemv_quant: k = %lld is not a whole number of blocks of type %d", (long long)k,
                int(w_type));
  MXH_CHECK_ARG(w_type == MXC_Q6_K || w_type == MXC_Q8_0 || reinterpret_cast<uintptr_t>(w) % 4 == 0,
                "mxc_gemv_quant: Q4_K / Q5_K weights must be 4-byte aligned");
  if (m == 0) return MXC_OK;
  MXH_DEV(x, size_t(m * k) * 2, "mxc_gemv_quant");
  MXH_DEV(w, size_t(n) * row_bytes, "mxc_gemv_quant");
  const size_t ysz = y_type == MXC_F32 ? 4 : 2;
  MXH_DEV(y, (size_t((m - 1) * ldy) + size_t(n)) * ysz, "mxc_gemv_quant");
  const auto* wb = static_cast<const uint8_t*>(w);
  if (y_type == MXC_F32)
    return submit(s, [=] { gemv_quant(m, n, k, x, wb, w_type, row_bytes, static_cast<float*>(y), ldy, beta); });
  return submit(s, [=] { gemv_quant(m, n, k, x, wb, w_type, row_bytes, static_cast<BF16*>(y), ldy, beta); });
}

}  // extern "C"
