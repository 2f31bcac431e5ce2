// AVX-512 scans of sampling.h: 16 logits per compare; NaN is detected by an unordered compare.
#include <immintrin.h>

#include <cmath>

#include "cpu/sampling/sampling.h"

namespace mixtile {

bool logits_argmax_avx512(const float* x, int64_t n, int64_t* out) {
  if (n <= 0) return false;
  // Pass 1: the maximum, and whether any lane was NaN (max_ps would hide it).
  __m512 m = _mm512_set1_ps(-INFINITY);
  __mmask16 nan = 0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_loadu_ps(x + i);
    nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    m = _mm512_max_ps(m, v);
  }
  if (i < n) {
    __mmask16 k = __mmask16((1u << (n - i)) - 1);
    __m512 v = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, x + i);
    nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    m = _mm512_max_ps(m, v);
  }
  if (nan) return false;
  const float best = _mm512_reduce_max_ps(m);
  // Pass 2: the first index holding it (+0 and -0 compare equal, as in the scalar loop's ">").
  const __m512 b = _mm512_set1_ps(best);
  for (i = 0; i + 16 <= n; i += 16) {
    __mmask16 e = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + i), b, _CMP_EQ_OQ);
    if (e) {
      *out = i + __builtin_ctz(e);
      return true;
    }
  }
  for (; i < n; ++i) {
    if (x[i] == best) {
      *out = i;
      return true;
    }
  }
  return false;  // unreachable: best came from the row
}

void logits_collect_above_avx512(const float* x, int64_t n, float t, std::vector<int32_t>* out) {
  const __m512 tv = _mm512_set1_ps(t);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    uint32_t k = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + i), tv, _CMP_GT_OQ);
    while (k) {
      out->push_back(int32_t(i + __builtin_ctz(k)));
      k &= k - 1;
    }
  }
  for (; i < n; ++i) {
    if (x[i] > t) out->push_back(int32_t(i));
  }
}

}  // namespace mixtile
