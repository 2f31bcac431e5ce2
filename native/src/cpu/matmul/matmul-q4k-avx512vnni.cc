// Q4_K weights x Q8_K activations with AVX-512 VNNI (vpdpbusd: u8 x s8 -> s32, 64 MACs each).
// Per super-block of 256 and weight row, 4 vectors of 64 unsigned nibbles in natural element
// order are built once and reused across a tile of tokens:
//   qs[32c .. 32c+32) --low nibbles--> elements 64c .. 64c+31  \  zmm_c (c = 0..3):
//                     --high nibbles-> elements 64c+32 .. +63  /  [lo(32 B) | hi(32 B)] & 0x0F
// so activations are read straight from the Q8_K block. vpdpbusd(zmm_c, act) leaves sub-block 2c
// in int32 lanes 0-7 and 2c+1 in lanes 8-15; two packs + vpmaddwd apply the 6-bit scales.
// The min term (-dmin * m_j * sum(q8 of sub-block j)) is a tiny second product per super-block:
// vpmaddwd of the 8 mins with the activation's 8 sub-block sums, scaled by dmin * d_a in float.
// The weight stream is prefetched 4 KiB ahead (kquant-prefetch.h: at few tokens this kernel is
// bound by the lines one core keeps in flight).
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "cpu/matmul/kquant-prefetch.h"
#include "cpu/matmul/kquant-scales.h"
#include "cpu/matmul/matmul.h"

namespace mixtile {
namespace {

// Register tile: 1 row x 8 tokens (8 accumulators + 4 weight + 2 scale vectors). Measured on
// Zen 4 (bench-op --op linear --type q4_k --tokens 256 --threads 1): 2x4 -> 103 GFLOP/s,
// 1x8 -> 135, 1x12 -> 137 per core; the weight unpack is what a wider token tile amortizes.
constexpr int TR = 1;  // rows per register tile
constexpr int TT = 8;  // tokens per register tile

template <int R, int T>
void tile(const GemmArgs& g, int64_t r0, int64_t t0, const int16_t* bs8 /* [T][nb][8] */) {
  const int64_t nb = g.k / QK_K;
  const __m512i mask4 = _mm512_set1_epi8(0x0F);
  const __m512i idx01 = _mm512_load_si512(Q4K_SCALE_IDX01), idx23 = _mm512_load_si512(Q4K_SCALE_IDX23);
  __m512 acc[R][T];
  __m128 accm[R][T];  // min term, subtracted at the end: dmin d_a m_j bsum_j, 2 sub-blocks a lane
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps(), accm[r][t] = _mm_setzero_ps();
  const block_q4_K* w[R];
  const block_q8_K* a[T];
  for (int r = 0; r < R; ++r) w[r] = reinterpret_cast<const block_q4_K*>(g.w + size_t(r0 + r) * g.w_stride);
  for (int t = 0; t < T; ++t) a[t] = reinterpret_cast<const block_q8_K*>(g.a + size_t(t0 + t) * g.a_stride);
  const uint8_t* w_end = g.w + size_t(g.n_rows) * g.w_stride;

  for (int64_t b = 0; b < nb; ++b) {
    __m512i wq[R][4], sc01[R], sc23[R];
    __m128i m16[R];
    __m128 dd[R];  // {d, dmin} of the weight block
    for (int r = 0; r < R; ++r) {
      const block_q4_K& x = w[r][b];
      kquant_prefetch_block<sizeof(block_q4_K)>(reinterpret_cast<const uint8_t*>(&x), w_end);
      for (int c = 0; c < 4; ++c) {
        __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs + 32 * c));
        __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1);
        wq[r][c] = _mm512_and_si512(both, mask4);
      }
      uint32_t u[4];
      unpack_q4k_scales(x.scales, u);
      __m128i sm = _mm_loadu_si128(reinterpret_cast<const __m128i*>(u));  // 8 sc, 8 m bytes
      __m512i sc16 = _mm512_cvtepu8_epi16(_mm256_castsi128_si256(sm));
      sc01[r] = _mm512_permutexvar_epi16(idx01, sc16);
      sc23[r] = _mm512_permutexvar_epi16(idx23, sc16);
      m16[r] = _mm_cvtepu8_epi16(_mm_srli_si128(sm, 8));
      uint32_t d2;
      std::memcpy(&d2, &x.d, 4);  // d, dmin adjacent F16
      dd[r] = _mm_cvtph_ps(_mm_cvtsi32_si128(int(d2)));
    }
    for (int t = 0; t < T; ++t) {
      const int8_t* q8 = a[t][b].qs;
      __m512i av[4];
      for (int c = 0; c < 4; ++c) av[c] = _mm512_loadu_si512(q8 + 64 * c);
      const __m128i bs = _mm_loadu_si128(reinterpret_cast<const __m128i*>(bs8 + (t * nb + b) * 8));
      const __m128 da = _mm_set1_ps(a[t][b].d);
      for (int r = 0; r < R; ++r) {
        __m512i p0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq[r][0], av[0]);
        __m512i p1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq[r][1], av[1]);
        __m512i p2 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq[r][2], av[2]);
        __m512i p3 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq[r][3], av[3]);
        // |p| <= 4 * 15 * 127 = 7620 fits int16: packs is exact.
        // vpdpwssd: int16 pairs x scales, accumulated (one instruction instead of madd + add).
        __m512i s = _mm512_dpwssd_epi32(_mm512_madd_epi16(_mm512_packs_epi32(p0, p1), sc01[r]),
                                        _mm512_packs_epi32(p2, p3), sc23[r]);
        const __m128 scale = _mm_mul_ps(dd[r], da);  // {d d_a, dmin d_a}
        acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_broadcastss_ps(scale), acc[r][t]);
        // Min term: m_j * bsum_j, 8 int16 products -> 4 int32 lanes (|.| <= 2 * 63 * 32 * 127).
        __m128i mi = _mm_madd_epi16(m16[r], bs);
        accm[r][t] = _mm_fmadd_ps(_mm_cvtepi32_ps(mi), _mm_shuffle_ps(scale, scale, 0x55), accm[r][t]);
      }
    }
  }
  for (int t = 0; t < T; ++t)
    for (int r = 0; r < R; ++r) {
      __m128 m = accm[r][t];
      m = _mm_add_ps(m, _mm_movehl_ps(m, m));
      m = _mm_add_ss(m, _mm_movehdup_ps(m));
      g.y[(t0 + t) * g.ldy + r0 + r] = _mm512_reduce_add_ps(acc[r][t]) - _mm_cvtss_f32(m);
    }
}

using TileFn = void (*)(const GemmArgs&, int64_t, int64_t, const int16_t*);
template <int R>
constexpr TileFn row_tiles[TT] = {tile<R, 1>, tile<R, 2>, tile<R, 3>, tile<R, 4>, tile<R, 5>, tile<R, 6>, tile<R, 7>, tile<R, 8>};
constexpr const TileFn* tiles[TR] = {row_tiles<1>};

}  // namespace

void gemm_q4_k_avx512vnni(const GemmArgs& g) {
  const int64_t nb = g.k / QK_K;
  // Per token tile: the Q8_K bsums summed over each 32-element sub-block, [TT][nb][8] int16
  // (|.| <= 32 * 127 = 4064).
  thread_local std::vector<int16_t> scratch;
  if (scratch.size() < size_t(TT * nb * 8)) scratch.resize(size_t(TT * nb * 8));
  int16_t* bs8 = scratch.data();
  for (int64_t t0 = 0; t0 < g.n_tok; t0 += TT) {
    int nt = int(std::min<int64_t>(TT, g.n_tok - t0));
    for (int t = 0; t < nt; ++t) {
      const block_q8_K* a = reinterpret_cast<const block_q8_K*>(g.a + size_t(t0 + t) * g.a_stride);
      for (int64_t b = 0; b < nb; ++b)
        for (int j = 0; j < 8; ++j) bs8[(t * nb + b) * 8 + j] = int16_t(a[b].bsums[2 * j] + a[b].bsums[2 * j + 1]);
    }
    for (int64_t r0 = 0; r0 < g.n_rows; r0 += TR) {
      int nr = int(std::min<int64_t>(TR, g.n_rows - r0));
      tiles[nr - 1][nt - 1](g, r0, t0, bs8);
    }
  }
}

}  // namespace mixtile
