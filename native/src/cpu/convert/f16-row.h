// F32 -> F16 rows (round to nearest even, as fp32_to_fp16): the KV cache's f16 write. The scalar
// conversion is branchy (~8 ns an element): a decode token's K and V rows (1024 elements a layer)
// took ~8 us of each layer's serial part; the AVX-512 path uses the hardware conversion.
#pragma once
#include <cstdint>

namespace mixtile {

// dst[i] = fp32_to_fp16(src[i]) for i < n, bit for bit (NaNs included); AVX-512 where active.
void fp32_to_fp16_row(const float* src, uint16_t* dst, int64_t n);
void fp32_to_fp16_row_scalar(const float* src, uint16_t* dst, int64_t n);
void fp32_to_fp16_row_avx512(const float* src, uint16_t* dst, int64_t n);

}  // namespace mixtile
