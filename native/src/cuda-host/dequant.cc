// Dequantize-at-load of libmixtile-cuda-host: ggml Q8_0 / Q4_K / Q5_K / Q6_K blocks and F16/F32 to BF16,
// through the addon's scalar dequantize_row (ggml's dequantize_row_* bit for bit, as the GPU kernels
// compute), so the BF16 result equals the CPU's rounded to BF16, bit for bit.
#include <algorithm>

#include "cpu/dequant/dequant.h"
#include "host-common.h"

using namespace mixtile::cuda_host;

namespace {

constexpr int QK8_0 = 32, Q8_0_BYTES = 34;
constexpr int QK_K = 256, Q4_K_BYTES = 144, Q5_K_BYTES = 176, Q6_K_BYTES = 210;

// n elements (whole blocks) of `t` to BF16, a chunk of f32 at a time.
void dequant_to_bf16(mxc_dtype t, const uint8_t* src, int64_t n, uint16_t* out) {
  constexpr int64_t CHUNK = 4096;  // a whole number of blocks of every type
  float row[CHUNK];
  const size_t chunk_bytes = mxc_dtype_bytes(t, CHUNK);
  for (int64_t i = 0; i < n; i += CHUNK) {
    const int64_t m = std::min(CHUNK, n - i);
    mixtile::dequantize_row(mixtile::GgmlType(t), src + size_t(i / CHUNK) * chunk_bytes, row, m);
    for (int64_t j = 0; j < m; ++j) out[i + j] = f32_to_bf16(row[j]);
  }
}

}  // namespace

extern "C" {

size_t mxc_dtype_bytes(mxc_dtype t, int64_t n) {
  if (n < 0) return 0;
  switch (t) {
    case MXC_F32: return size_t(n) * 4;
    case MXC_F16:
    case MXC_BF16: return size_t(n) * 2;
    case MXC_Q8_0: return n % QK8_0 ? 0 : size_t(n / QK8_0) * Q8_0_BYTES;
    case MXC_Q4_K: return n % QK_K ? 0 : size_t(n / QK_K) * Q4_K_BYTES;
    case MXC_Q5_K: return n % QK_K ? 0 : size_t(n / QK_K) * Q5_K_BYTES;
    case MXC_Q6_K: return n % QK_K ? 0 : size_t(n / QK_K) * Q6_K_BYTES;
  }
  return 0;
}

mxc_status mxc_dequant_bf16(const void* src, mxc_dtype t, int64_t n, uint16_t* out, mxc_stream* s) {
  MXH_CHECK_ARG(src && out, "mxc_dequant_bf16: null pointer");
  MXH_CHECK_ARG(n >= 0, "mxc_dequant_bf16: negative n");
  if (n == 0) return MXC_OK;
  MXH_CHECK_ARG(mxc_dtype_bytes(t, n) != 0,
                "mxc_dequant_bf16: %lld elements are not whole blocks of type %d (or the type is not "
                "F32, F16, BF16, Q8_0, Q4_K, Q5_K, Q6_K)",
                (long long)n, int(t));
  MXH_DEV(src, mxc_dtype_bytes(t, n), "mxc_dequant_bf16");
  MXH_DEV(out, size_t(n) * 2, "mxc_dequant_bf16");
  const auto* in = static_cast<const uint8_t*>(src);
  return submit(s, [=] {
    if (t == MXC_BF16) std::memmove(out, in, size_t(n) * 2);
    else dequant_to_bf16(t, in, n, out);
  });
}

}  // extern "C"
