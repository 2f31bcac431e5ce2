// AVX2 + FMA paths for CPUs without AVX-512 (most consumer desktops): F32, F16 (F16C widening)
// and BF16 (widened by a 16-bit shift; activations are BF16 too, see matmul.h) against
// activations, 3 rows x 4 tokens of 8-lane accumulators, masked-free scalar k tail.
#include <immintrin.h>

#include "cpu/matmul/matmul.h"

namespace mixtile {
namespace {

constexpr int TR = 3;
constexpr int TT = 4;

enum class W { f32, f16, bf16 };

template <W F>
inline __m256 load8(const uint8_t* row, int64_t i) {
  if constexpr (F == W::f32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + i);
  } else if constexpr (F == W::f16) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(reinterpret_cast<const uint16_t*>(row) + i)));
  } else {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(reinterpret_cast<const uint16_t*>(row) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

template <W F>
inline float load1(const uint8_t* row, int64_t i) {
  if constexpr (F == W::f32) return reinterpret_cast<const float*>(row)[i];
  else if constexpr (F == W::f16) return fp16_to_fp32(reinterpret_cast<const uint16_t*>(row)[i]);
  else return bf16_to_fp32(reinterpret_cast<const uint16_t*>(row)[i]);
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Activation rows: F32 for F32/F16 weights, BF16 for BF16 weights (same loaders).
template <W F>
constexpr W ACT = F == W::bf16 ? W::bf16 : W::f32;

template <W F, int R, int T>
void tile(const GemmArgs& g, int64_t r0, int64_t t0) {
  __m256 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  const uint8_t* w[R];
  const uint8_t* a[T];
  for (int r = 0; r < R; ++r) w[r] = g.w + size_t(r0 + r) * g.w_stride;
  for (int t = 0; t < T; ++t) a[t] = g.a + size_t(t0 + t) * g.a_stride;
  int64_t i = 0;
  for (; i + 8 <= g.k; i += 8) {
    __m256 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = load8<F>(w[r], i);
    for (int t = 0; t < T; ++t) {
      __m256 av = load8<ACT<F>>(a[t], i);
      for (int r = 0; r < R; ++r) acc[r][t] = _mm256_fmadd_ps(wv[r], av, acc[r][t]);
    }
  }
  for (int t = 0; t < T; ++t) {
    for (int r = 0; r < R; ++r) {
      float s = hsum(acc[r][t]);
      for (int64_t j = i; j < g.k; ++j) s += load1<F>(w[r], j) * load1<ACT<F>>(a[t], j);
      g.y[(t0 + t) * g.ldy + r0 + r] = s;
    }
  }
}

template <W F>
void gemm(const GemmArgs& g) {
  using TileFn = void (*)(const GemmArgs&, int64_t, int64_t);
  static constexpr TileFn tiles[TR][TT] = {
      {tile<F, 1, 1>, tile<F, 1, 2>, tile<F, 1, 3>, tile<F, 1, 4>},
      {tile<F, 2, 1>, tile<F, 2, 2>, tile<F, 2, 3>, tile<F, 2, 4>},
      {tile<F, 3, 1>, tile<F, 3, 2>, tile<F, 3, 3>, tile<F, 3, 4>},
  };
  for (int64_t t0 = 0; t0 < g.n_tok; t0 += TT) {
    int nt = int(std::min<int64_t>(TT, g.n_tok - t0));
    for (int64_t r0 = 0; r0 < g.n_rows; r0 += TR) {
      int nr = int(std::min<int64_t>(TR, g.n_rows - r0));
      tiles[nr - 1][nt - 1](g, r0, t0);
    }
  }
}

}  // namespace

void gemm_f32_avx2(const GemmArgs& g) { gemm<W::f32>(g); }
void gemm_f16_avx2(const GemmArgs& g) { gemm<W::f16>(g); }
void gemm_bf16_avx2(const GemmArgs& g) { gemm<W::bf16>(g); }

}  // namespace mixtile
