// ggml's quantized block layouts on the GPU (native/src/tensor.h, ggml-common.h): sizes, the f16 scale read,
// and the 6-bit scale/min unpacking of Q4_K / Q5_K. Shared by dequant.cu (to BF16 at load and per batch) and
// gemv-quant.cu (in registers at decode), so both compute each weight exactly as ggml's dequantize_row_* does.
#pragma once
#include <cuda_fp16.h>

#include <cstdint>

namespace mixtile::cuda {

constexpr int QK8_0 = 32, Q8_0_BYTES = 34;
constexpr int QK_K = 256, Q4_K_BYTES = 144, Q5_K_BYTES = 176, Q6_K_BYTES = 210;

__device__ __forceinline__ float half_at(const uint8_t* p) {
  return __half2float(__ushort_as_half(uint16_t(p[0]) | uint16_t(p[1]) << 8));
}

// Scale and min of sub-block `is` (0..7) of a Q4_K / Q5_K super-block (ggml's get_scale_min_k4):
// *ds = d * scale, *dm = dmin * min.
__device__ __forceinline__ void scale_min_k4(const uint8_t* sc, int is, float d, float dmin, float* ds, float* dm) {
  uint8_t s, m;
  if (is < 4) {
    s = sc[is] & 63;
    m = sc[is + 4] & 63;
  } else {
    s = (sc[is + 4] & 0xF) | ((sc[is - 4] >> 6) << 4);
    m = (sc[is + 4] >> 4) | ((sc[is] >> 6) << 4);
  }
  *ds = d * float(s);
  *dm = dmin * float(m);
}

}  // namespace mixtile::cuda
