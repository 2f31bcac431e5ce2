// Q6_K weights x Q8_K activations with AVX-512 VNNI. Per super-block and row, the 6-bit quants
// (0..63, unsigned) are rebuilt as 4 vectors of 64 bytes in natural element order and reused
// across a tile of 8 tokens:
//   half n (128 elements): ql[64n .. 64n+64) low nibbles  = elements   0..63 (bits 0-3)
//                          ql[64n .. 64n+64) high nibbles = elements  64..127
//                          qh[32n .. 32n+32) bits 0-1 / 2-3 / 4-5 / 6-7 = bits 4-5 of elements
//                          0..31 / 32..63 / 64..95 / 96..127
// vpdpbusd(q, act) gives 4-element partial sums; 16-element sub-block s of vector c sits in int32
// lanes 4(s%4) .. +3. The -32 offset is folded into the same int32 sum per super-block as
// -32 * sum_s sc_s * bsums_s (vpmaddwd over the Q8_K bsums): exact, and it replaced a per-row float
// pass over stored offsets that cost ~20% of the 1-token GEMV (lm_head Q6_K 2048 x 151936).
// The weight stream is prefetched 4 KiB ahead (kquant-prefetch.h).
#include <immintrin.h>

#include <algorithm>

#include "cpu/matmul/kquant-prefetch.h"
#include "cpu/matmul/matmul.h"

namespace mixtile {
namespace {

constexpr int TT = 8;  // tokens per register tile (1 row x 8 tokens, as the Q4_K kernel)

// int16 lane -> sub-block after packs_epi32(p0, p1): 128-bit lane L = [p0 lanes 4L..4L+3 (sub-block
// L) | p1 lanes 4L..4L+3 (sub-block 4 + L)]; packs_epi32(p2, p3) likewise with 8 + L, 12 + L.
alignas(64) const int16_t SCALE_IDX01[32] = {0, 0, 0, 0, 4, 4, 4, 4, 1, 1, 1, 1, 5, 5, 5, 5,
                                             2, 2, 2, 2, 6, 6, 6, 6, 3, 3, 3, 3, 7, 7, 7, 7};
alignas(64) const int16_t SCALE_IDX23[32] = {8,  8,  8,  8,  12, 12, 12, 12, 9,  9,  9,  9,  13, 13, 13, 13,
                                             10, 10, 10, 10, 14, 14, 14, 14, 11, 11, 11, 11, 15, 15, 15, 15};

template <int T>
void tile(const GemmArgs& g, int64_t r, int64_t t0) {
  const int64_t nb = g.k / QK_K;
  const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
  const __m512i idx01 = _mm512_load_si512(SCALE_IDX01), idx23 = _mm512_load_si512(SCALE_IDX23);
  __m512 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  const block_q6_K* w = reinterpret_cast<const block_q6_K*>(g.w + size_t(r) * g.w_stride);
  const block_q8_K* a[T];
  for (int t = 0; t < T; ++t) a[t] = reinterpret_cast<const block_q8_K*>(g.a + size_t(t0 + t) * g.a_stride);
  const uint8_t* w_end = g.w + size_t(g.n_rows) * g.w_stride;

  for (int64_t b = 0; b < nb; ++b) {
    const block_q6_K& x = w[b];
    kquant_prefetch_block<sizeof(block_q6_K)>(reinterpret_cast<const uint8_t*>(&x), w_end);
    __m512i wq[4];
    for (int n = 0; n < 2; ++n) {
      __m512i l = _mm512_loadu_si512(x.ql + 64 * n);
      __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qh + 32 * n));
      __m512i h01 = _mm512_inserti64x4(_mm512_castsi256_si512(h), _mm256_srli_epi16(h, 2), 1);
      __m512i h23 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_srli_epi16(h, 4)), _mm256_srli_epi16(h, 6), 1);
      wq[2 * n] = _mm512_or_si512(_mm512_and_si512(l, m4), _mm512_and_si512(_mm512_slli_epi16(h01, 4), m30));
      wq[2 * n + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                                      _mm512_and_si512(_mm512_slli_epi16(h23, 4), m30));
    }
    const __m128i sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x.scales));
    __m512i sc16 = _mm512_cvtepi8_epi16(_mm256_castsi128_si256(sc8));
    __m512i sc01 = _mm512_permutexvar_epi16(idx01, sc16), sc23 = _mm512_permutexvar_epi16(idx23, sc16);
    // -32 * sc_s as int16 (|.| <= 4096), paired with bsums_s by vpmaddwd below.
    const __m256i scm32 = _mm256_slli_epi16(_mm256_sub_epi16(_mm256_setzero_si256(), _mm256_cvtepi8_epi16(sc8)), 5);
    __m512 dw = _mm512_set1_ps(_cvtsh_ss(x.d));
    for (int t = 0; t < T; ++t) {
      const int8_t* q8 = a[t][b].qs;
      __m512i p0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq[0], _mm512_loadu_si512(q8));
      __m512i p1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq[1], _mm512_loadu_si512(q8 + 64));
      __m512i p2 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq[2], _mm512_loadu_si512(q8 + 128));
      __m512i p3 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq[3], _mm512_loadu_si512(q8 + 192));
      // |p| <= 4 * 63 * 127 = 32004 fits int16: packs is exact.
      // The offset term starts the accumulator: 8 int32 lanes of -32 * (sc bsum + sc bsum), |.| <= 16.5M;
      // a lane's total stays far inside int32 (lanes are summed only after the float conversion).
      __m512i off = _mm512_castsi256_si512(
          _mm256_madd_epi16(scm32, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[t][b].bsums))));
      off = _mm512_inserti64x4(off, _mm256_setzero_si256(), 1);
      // vpdpwssd: int16 pairs x scales, accumulated (one instruction instead of madd + add).
      __m512i s = _mm512_dpwssd_epi32(_mm512_dpwssd_epi32(off, _mm512_packs_epi32(p0, p1), sc01),
                                      _mm512_packs_epi32(p2, p3), sc23);
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_set1_ps(a[t][b].d)), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) g.y[(t0 + t) * g.ldy + r] = _mm512_reduce_add_ps(acc[t]);
}

using TileFn = void (*)(const GemmArgs&, int64_t, int64_t);
constexpr TileFn tiles[TT] = {tile<1>, tile<2>, tile<3>, tile<4>, tile<5>, tile<6>, tile<7>, tile<8>};

}  // namespace

void gemm_q6_k_avx512vnni(const GemmArgs& g) {
  for (int64_t t0 = 0; t0 < g.n_tok; t0 += TT) {
    int nt = int(std::min<int64_t>(TT, g.n_tok - t0));
    for (int64_t r = 0; r < g.n_rows; ++r) tiles[nt - 1](g, r, t0);
  }
}

}  // namespace mixtile
