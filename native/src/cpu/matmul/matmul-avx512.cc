// F32 and F16 weights x F32 activations with AVX-512 F (FMA; F16 widened by vcvtph2ps).
// Same register tile as the BF16 kernel: 4 rows x 6 tokens, 16 floats per k step, masked tail.
#include <immintrin.h>

#include "cpu/matmul/matmul.h"

namespace mixtile {
namespace {

constexpr int TR = 4;
constexpr int TT = 6;

template <bool F16>
inline __m512 load_w(const uint8_t* row, int64_t i, __mmask16 m) {
  if constexpr (F16) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, reinterpret_cast<const uint16_t*>(row) + i));
  } else {
    return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(row) + i);
  }
}

template <bool F16, int R, int T>
void tile(const GemmArgs& g, int64_t r0, int64_t t0) {
  __m512 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  const uint8_t* w[R];
  const float* a[T];
  for (int r = 0; r < R; ++r) w[r] = g.w + size_t(r0 + r) * g.w_stride;
  for (int t = 0; t < T; ++t) a[t] = reinterpret_cast<const float*>(g.a + size_t(t0 + t) * g.a_stride);
  for (int64_t i = 0; i < g.k; i += 16) {
    __mmask16 m = g.k - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << unsigned(g.k - i)) - 1);
    __m512 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = load_w<F16>(w[r], i, m);
    for (int t = 0; t < T; ++t) {
      __m512 av = _mm512_maskz_loadu_ps(m, a[t] + i);
      for (int r = 0; r < R; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], av, acc[r][t]);
    }
  }
  for (int t = 0; t < T; ++t)
    for (int r = 0; r < R; ++r) g.y[(t0 + t) * g.ldy + r0 + r] = _mm512_reduce_add_ps(acc[r][t]);
}

template <bool F16>
void gemm(const GemmArgs& g) {
  using TileFn = void (*)(const GemmArgs&, int64_t, int64_t);
  static constexpr TileFn tiles[TR][TT] = {
      {tile<F16, 1, 1>, tile<F16, 1, 2>, tile<F16, 1, 3>, tile<F16, 1, 4>, tile<F16, 1, 5>, tile<F16, 1, 6>},
      {tile<F16, 2, 1>, tile<F16, 2, 2>, tile<F16, 2, 3>, tile<F16, 2, 4>, tile<F16, 2, 5>, tile<F16, 2, 6>},
      {tile<F16, 3, 1>, tile<F16, 3, 2>, tile<F16, 3, 3>, tile<F16, 3, 4>, tile<F16, 3, 5>, tile<F16, 3, 6>},
      {tile<F16, 4, 1>, tile<F16, 4, 2>, tile<F16, 4, 3>, tile<F16, 4, 4>, tile<F16, 4, 5>, tile<F16, 4, 6>},
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

void gemm_f32_avx512(const GemmArgs& g) { gemm<false>(g); }
void gemm_f16_avx512(const GemmArgs& g) { gemm<true>(g); }

}  // namespace mixtile
