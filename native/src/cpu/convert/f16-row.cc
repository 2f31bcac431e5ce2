// F32 -> F16 rows: the scalar reference and the dispatch (f16-row.h).
#include "cpu/convert/f16-row.h"

#include "cpu/isa.h"
#include "tensor.h"

namespace mixtile {

void fp32_to_fp16_row_scalar(const float* src, uint16_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = fp32_to_fp16(src[i]);
}

void fp32_to_fp16_row(const float* src, uint16_t* dst, int64_t n) {
  if (int(active_isa()) >= int(Isa::avx512)) return fp32_to_fp16_row_avx512(src, dst, n);
  fp32_to_fp16_row_scalar(src, dst, n);
}

}  // namespace mixtile
