// e^x on 16 float lanes with AVX-512F, shared by the kernels that need it (SiLU in the activation
// conversion, flash attention's softmax). Internal linkage on purpose: each including file compiles
// it with its own ISA flags.
#pragma once
#include <immintrin.h>

namespace mixtile {
namespace {

// e^x for x in [-87, 88] (x below gives e^-87 ~ 1.6e-38): 2^n * p(r), r = x - n ln2 in [-ln2/2, ln2/2],
// degree-6 Taylor, relative error < 2e-7 (below the Q8/BF16 activation rounding and the softmax's needs).
inline __m512 exp512(__m512 x) {
  x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.f)), _mm512_set1_ps(-87.f));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145752f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860677e-6f), r);
  __m512 p = _mm512_set1_ps(1.f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(p, n);
}

}  // namespace
}  // namespace mixtile
