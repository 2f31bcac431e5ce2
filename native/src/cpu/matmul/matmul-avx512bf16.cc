// BF16 weights x BF16 activations with AVX-512 BF16 (vdpbf16ps: 32 bf16 pairs -> 16 f32 lanes).
// Register tile: 4 weight rows x 6 tokens = 24 zmm accumulators; per 32-element k step it loads
// 4 weight vectors and 6 activation vectors (memory operands) for 24 dot instructions. The k tail
// (k % 32) uses masked loads. Rows stay in the file's row-major layout: each row is streamed once
// per token tile, and the activation tile (6 x k bf16) stays in L1/L2.
#include <immintrin.h>

#include "cpu/matmul/matmul.h"

namespace mixtile {
namespace {

constexpr int TR = 4;  // rows per register tile
constexpr int TT = 6;  // tokens per register tile
// Loop order. Token tiles outer reuse one activation tile across all rows, but the first token
// tile then streams the rows from DRAM at DRAM speed (later tiles read them from L2); with few
// tokens per call (prefill experts: ~32 per expert at 512 tokens) that pass is a large share.
// Rows outer keeps each 4-row tile (16 KB at k = 2048) in L1 for all token tiles and prefetches
// the next row tile into L2 meanwhile, so the DRAM reads overlap the compute; the activations
// (<= this many tokens) are read from L2.
constexpr int64_t ROWS_OUTER_MAX_TOKENS = 64;

// {sum(v0), sum(v1), sum(v2), sum(v3)}.
inline __m128 hsum4(__m512 v0, __m512 v1, __m512 v2, __m512 v3) {
  // Per 128-bit chunk: {v0, v1} and {v2, v3} pairwise, then {v0, v1, v2, v3}; then the 4 chunks.
  __m512 a01 = _mm512_add_ps(_mm512_unpacklo_ps(v0, v1), _mm512_unpackhi_ps(v0, v1));
  __m512 a23 = _mm512_add_ps(_mm512_unpacklo_ps(v2, v3), _mm512_unpackhi_ps(v2, v3));
  __m512 b = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a01), _mm512_castps_pd(a23))),
                           _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a01), _mm512_castps_pd(a23))));
  __m256 c = _mm256_add_ps(_mm512_castps512_ps256(b), _mm512_extractf32x8_ps(b, 1));
  return _mm_add_ps(_mm256_castps256_ps128(c), _mm256_extractf128_ps(c, 1));
}

// pf: rows of the next row tile to prefetch into L2 (nullptr: none), pf_rows of them from pf on,
// one cache line per row per k step, so they arrive while this tile computes.
template <int R, int T>
void tile(const GemmArgs& g, int64_t r0, int64_t t0, const uint8_t* pf, int pf_rows) {
  __m512 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  const uint16_t* w[R];
  const uint16_t* a[T];
  for (int r = 0; r < R; ++r) w[r] = reinterpret_cast<const uint16_t*>(g.w + size_t(r0 + r) * g.w_stride);
  for (int t = 0; t < T; ++t) a[t] = reinterpret_cast<const uint16_t*>(g.a + size_t(t0 + t) * g.a_stride);
  int64_t i = 0;
  for (; i + 32 <= g.k; i += 32) {
    __m512bh wv[R];
    for (int r = 0; r < R; ++r) wv[r] = (__m512bh)_mm512_loadu_si512(w[r] + i);
    if (pf) {
      for (int r = 0; r < pf_rows; ++r) _mm_prefetch(reinterpret_cast<const char*>(pf + size_t(r) * g.w_stride + size_t(i) * 2), _MM_HINT_T1);
    }
    for (int t = 0; t < T; ++t) {
      __m512bh av = (__m512bh)_mm512_loadu_si512(a[t] + i);
      for (int r = 0; r < R; ++r) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], wv[r], av);
    }
  }
  if (i < g.k) {
    __mmask32 m = __mmask32((1u << unsigned(g.k - i)) - 1);  // k - i in [1, 31]
    __m512bh wv[R];
    for (int r = 0; r < R; ++r) wv[r] = (__m512bh)_mm512_maskz_loadu_epi16(m, w[r] + i);
    for (int t = 0; t < T; ++t) {
      __m512bh av = (__m512bh)_mm512_maskz_loadu_epi16(m, a[t] + i);
      for (int r = 0; r < R; ++r) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], wv[r], av);
    }
  }
  if constexpr (R == 4) {
    // Four rows of one token are adjacent in y: reduce their accumulators together (13 vector ops
    // and one 128-bit store instead of four full horizontal sums). It matters most at small k: the
    // experts' down projection (k 768, 336 rows x 32 tokens in L2, one Zen 4 core) 167 -> 177 GFLOP/s.
    for (int t = 0; t < T; ++t) _mm_storeu_ps(g.y + (t0 + t) * g.ldy + r0, hsum4(acc[0][t], acc[1][t], acc[2][t], acc[3][t]));
  } else {
    for (int t = 0; t < T; ++t)
      for (int r = 0; r < R; ++r) g.y[(t0 + t) * g.ldy + r0 + r] = _mm512_reduce_add_ps(acc[r][t]);
  }
}

using TileFn = void (*)(const GemmArgs&, int64_t, int64_t, const uint8_t*, int);
template <int R>
constexpr TileFn row_tiles[TT] = {tile<R, 1>, tile<R, 2>, tile<R, 3>, tile<R, 4>, tile<R, 5>, tile<R, 6>};
constexpr const TileFn* tiles[TR] = {row_tiles<1>, row_tiles<2>, row_tiles<3>, row_tiles<4>};

}  // namespace

void gemm_bf16_avx512bf16(const GemmArgs& g) {
  if (g.n_tok <= ROWS_OUTER_MAX_TOKENS) {
    // The next row tile's prefetch is spread over this tile's token tiles (one row each) so the
    // requests do not all queue at once; with fewer token tiles than rows the first takes them all.
    const int64_t n_tt = (g.n_tok + TT - 1) / TT;
    for (int64_t r0 = 0; r0 < g.n_rows; r0 += TR) {
      int nr = int(std::min<int64_t>(TR, g.n_rows - r0));
      const bool next_full = r0 + 2 * TR <= g.n_rows;
      const uint8_t* next = g.w + size_t(r0 + TR) * g.w_stride;
      for (int64_t j = 0; j < n_tt; ++j) {
        const uint8_t* pf = nullptr;
        int pf_rows = 0;
        if (next_full && n_tt < TR && j == 0) pf = next, pf_rows = TR;
        else if (next_full && n_tt >= TR && j < TR) pf = next + size_t(j) * g.w_stride, pf_rows = 1;
        tiles[nr - 1][int(std::min<int64_t>(TT, g.n_tok - j * TT)) - 1](g, r0, j * TT, pf, pf_rows);
      }
    }
    return;
  }
  // Token tiles outer so one activation tile is reused across all rows of this task's block.
  for (int64_t t0 = 0; t0 < g.n_tok; t0 += TT) {
    int nt = int(std::min<int64_t>(TT, g.n_tok - t0));
    for (int64_t r0 = 0; r0 < g.n_rows; r0 += TR) {
      int nr = int(std::min<int64_t>(TR, g.n_rows - r0));
      tiles[nr - 1][nt - 1](g, r0, t0, nullptr, 0);
    }
  }
}

}  // namespace mixtile
