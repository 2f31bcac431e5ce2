// AVX-512 activation conversion (same rounding as the scalar code in matmul-convert.cc, so both
// produce identical bytes) and the SiLU(g) * u step of the experts.
#include <immintrin.h>

#include <cmath>

#include "cpu/matmul/matmul.h"
#include "cpu/simd/exp-avx512.h"

namespace mixtile {
namespace {

inline float abs_max(const float* x, int n /* multiple of 16 */) {
  __m512 m = _mm512_setzero_ps();
  for (int i = 0; i < n; i += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
  return _mm512_reduce_max_ps(m);
}

void q8_k(const float* x, int64_t k, block_q8_K* y) {
  for (int64_t b = 0; b < k / QK_K; ++b, x += QK_K) {
    float amax = abs_max(x, QK_K);
    float d = amax / 127.f;
    __m512 id = _mm512_set1_ps(d ? 1.f / d : 0.f);
    y[b].d = d;
    for (int g = 0; g < 16; ++g) {
      // cvtps_epi32 rounds to nearest even, as nearbyint does in the scalar path.
      __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 16 * g), id));
      q = _mm512_max_epi32(_mm512_min_epi32(q, _mm512_set1_epi32(127)), _mm512_set1_epi32(-127));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(y[b].qs + 16 * g), _mm512_cvtepi32_epi8(q));
      y[b].bsums[g] = int16_t(_mm512_reduce_add_epi32(q));
    }
  }
}

void q8_0(const float* x, int64_t k, block_q8_0* y) {
  for (int64_t b = 0; b < k / QK8_0; ++b, x += QK8_0) {
    float amax = abs_max(x, QK8_0);
    float d = amax / 127.f;
    __m512 id = _mm512_set1_ps(d ? 1.f / d : 0.f);
    y[b].d = fp32_to_fp16(d);
    for (int g = 0; g < 2; ++g) {
      __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 16 * g), id));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(y[b].qs + 16 * g), _mm512_cvtepi32_epi8(q));
    }
  }
}

// Round to nearest even in integer arithmetic, exactly fp32_to_bf16 for non-NaN values.
void bf16(const float* x, int64_t k, uint16_t* y) {
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    __m512i v = _mm512_castps_si512(_mm512_loadu_ps(x + i));
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(v, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(v, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF))), 16);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), _mm512_cvtepi32_epi16(r));
  }
  for (; i < k; ++i) y[i] = fp32_to_bf16(x[i]);
}

}  // namespace

void convert_act_row_avx512(GgmlType wtype, const float* x, int64_t k, void* dst) {
  switch (act_type_for(wtype)) {
    case GgmlType::Q8_K: q8_k(x, k, static_cast<block_q8_K*>(dst)); break;
    case GgmlType::Q8_0: q8_0(x, k, static_cast<block_q8_0*>(dst)); break;
    case GgmlType::BF16: bf16(x, k, static_cast<uint16_t*>(dst)); break;
    default: std::memcpy(dst, x, size_t(k) * 4); break;
  }
}

void silu_mul_avx512(float* g, const float* u, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_loadu_ps(g + i);
    __m512 s = _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.f), exp512(_mm512_sub_ps(_mm512_setzero_ps(), v))));
    _mm512_storeu_ps(g + i, _mm512_mul_ps(s, _mm512_loadu_ps(u + i)));
  }
  for (; i < n; ++i) g[i] = g[i] / (1.f + std::exp(-g[i])) * u[i];
}

}  // namespace mixtile
