// F32 -> F16 rows with the AVX-512 conversion (vcvtps2ph, round to nearest even: the same bits as
// fp32_to_fp16 for every non-NaN input, subnormals and overflow to infinity included). A block of
// 16 holding a NaN goes through the scalar path, whose NaN bits the hardware would not reproduce.
#include <immintrin.h>

#include "cpu/convert/f16-row.h"
#include "tensor.h"

namespace mixtile {

void fp32_to_fp16_row_avx512(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(src + i);
    if (_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q)) {
      for (int j = 0; j < 16; ++j) dst[i + j] = fp32_to_fp16(src[i + j]);
      continue;
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  for (; i < n; ++i) dst[i] = fp32_to_fp16(src[i]);
}

}  // namespace mixtile
