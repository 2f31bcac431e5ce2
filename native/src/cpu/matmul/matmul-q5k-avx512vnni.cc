// Q5_K weights x Q8_K activations with AVX-512 VNNI: the Q4_K kernel (matmul-q4k-avx512vnni.cc,
// whose layout notes apply) plus the 5th bit: bit 2c (2c+1) of qh[l] is bit 4 of element
// 64c + l (64c + 32 + l), merged into zmm_c before the dot products.
// Q4_K part: weights x Q8_K activations with AVX-512 VNNI (vpdpbusd: u8 x s8 -> s32, 64 MACs each).
// Per super-block of 256 and weight row, 4 vectors of 64 unsigned nibbles in natural element
// order are built once and reused across a tile of tokens:
//   qs[32c .. 32c+32) --low nibbles--> elements 64c .. 64c+31  \  zmm_c (c = 0..3):
//                     --high nibbles-> elements 64c+32 .. +63  /  [lo(32 B) | hi(32 B)] & 0x0F
// so activations are read straight from the Q8_K block. vpdpbusd(zmm_c, act) leaves sub-block 2c
// in int32 lanes 0-7 and 2c+1 in lanes 8-15; two packs + vpmaddwd apply the 6-bit scales.
// The min term (-dmin * m_j * sum(q8 of sub-block j)) is a tiny second product over 8 values per
// super-block, done in float after the main loop.
#include <immintrin.h>

#include <vector>

#include "cpu/matmul/kquant-scales.h"
#include "cpu/matmul/matmul.h"

namespace mixtile {
namespace {

// Register tile: 1 row x 8 tokens, as the Q4_K kernel.
constexpr int TR = 1;  // rows per register tile
constexpr int TT = 8;  // tokens per register tile

template <int R, int T>
void tile(const GemmArgs& g, int64_t r0, int64_t t0, const float* bsum_t /* [T][nb*8] */, float* mins_r /* [R][nb*8] */) {
  const int64_t nb = g.k / QK_K;
  const __m512i mask4 = _mm512_set1_epi8(0x0F), bit4 = _mm512_set1_epi8(0x10);
  const __m512i idx01 = _mm512_load_si512(Q4K_SCALE_IDX01), idx23 = _mm512_load_si512(Q4K_SCALE_IDX23);
  __m512 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  const block_q5_K* w[R];
  const block_q8_K* a[T];
  for (int r = 0; r < R; ++r) w[r] = reinterpret_cast<const block_q5_K*>(g.w + size_t(r0 + r) * g.w_stride);
  for (int t = 0; t < T; ++t) a[t] = reinterpret_cast<const block_q8_K*>(g.a + size_t(t0 + t) * g.a_stride);

  for (int64_t b = 0; b < nb; ++b) {
    __m512i wq[R][4], sc01[R], sc23[R];
    __m512 dw[R];
    for (int r = 0; r < R; ++r) {
      const block_q5_K& x = w[r][b];
      __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qh));
      for (int c = 0; c < 4; ++c) {
        __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs + 32 * c));
        __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1);
        __m512i hb = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_srl_epi16(h, _mm_cvtsi32_si128(2 * c))),
                                        _mm256_srl_epi16(h, _mm_cvtsi32_si128(2 * c + 1)), 1);
        wq[r][c] = _mm512_or_si512(_mm512_and_si512(both, mask4), _mm512_and_si512(_mm512_slli_epi16(hb, 4), bit4));
      }
      uint32_t u[4];
      unpack_q4k_scales(x.scales, u);
      __m512i sc16 = _mm512_cvtepu8_epi16(_mm256_castsi128_si256(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(u))));
      sc01[r] = _mm512_permutexvar_epi16(idx01, sc16);
      sc23[r] = _mm512_permutexvar_epi16(idx23, sc16);
      dw[r] = _mm512_set1_ps(_cvtsh_ss(x.d));
      // -dmin * m_j for the min term
      __m256 m8 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(u + 2))));
      _mm256_storeu_ps(mins_r + r * nb * 8 + b * 8, _mm256_mul_ps(m8, _mm256_set1_ps(-_cvtsh_ss(x.dmin))));
    }
    for (int t = 0; t < T; ++t) {
      const int8_t* q8 = a[t][b].qs;
      __m512i av[4];
      for (int c = 0; c < 4; ++c) av[c] = _mm512_loadu_si512(q8 + 64 * c);
      __m512 da = _mm512_set1_ps(a[t][b].d);
      for (int r = 0; r < R; ++r) {
        __m512i p0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq[r][0], av[0]);
        __m512i p1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq[r][1], av[1]);
        __m512i p2 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq[r][2], av[2]);
        __m512i p3 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq[r][3], av[3]);
        // |p| <= 4 * 31 * 127 = 15748 fits int16: packs is exact.
        // vpdpwssd: int16 pairs x scales, accumulated (one instruction instead of madd + add).
        __m512i s = _mm512_dpwssd_epi32(_mm512_madd_epi16(_mm512_packs_epi32(p0, p1), sc01[r]),
                                        _mm512_packs_epi32(p2, p3), sc23[r]);
        acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw[r], da), acc[r][t]);
      }
    }
  }
  // Min term: sum over (block, sub-block) of (-dmin m_j) * (d_a * bsum_j), 16 at a time.
  const int64_t nm = nb * 8;
  for (int t = 0; t < T; ++t) {
    for (int r = 0; r < R; ++r) {
      __m512 m = _mm512_setzero_ps();
      int64_t i = 0;
      for (; i + 16 <= nm; i += 16)
        m = _mm512_fmadd_ps(_mm512_loadu_ps(mins_r + r * nm + i), _mm512_loadu_ps(bsum_t + t * nm + i), m);
      float tail = 0;
      for (; i < nm; ++i) tail += mins_r[r * nm + i] * bsum_t[t * nm + i];
      g.y[(t0 + t) * g.ldy + r0 + r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][t], m)) + tail;
    }
  }
}

using TileFn = void (*)(const GemmArgs&, int64_t, int64_t, const float*, float*);
template <int R>
constexpr TileFn row_tiles[TT] = {tile<R, 1>, tile<R, 2>, tile<R, 3>, tile<R, 4>, tile<R, 5>, tile<R, 6>, tile<R, 7>, tile<R, 8>};
constexpr const TileFn* tiles[TR] = {row_tiles<1>};

}  // namespace

void gemm_q5_k_avx512vnni(const GemmArgs& g) {
  const int64_t nb = g.k / QK_K, nm = nb * 8;
  // Per token tile: d_a * (sum of q8 over each 32-element sub-block), [TT][nm] floats.
  thread_local std::vector<float> scratch;
  if (scratch.size() < size_t((TT + TR) * nm)) scratch.resize(size_t((TT + TR) * nm));
  float* bsum = scratch.data();
  float* mins = bsum + TT * nm;
  for (int64_t t0 = 0; t0 < g.n_tok; t0 += TT) {
    int nt = int(std::min<int64_t>(TT, g.n_tok - t0));
    for (int t = 0; t < nt; ++t) {
      const block_q8_K* a = reinterpret_cast<const block_q8_K*>(g.a + size_t(t0 + t) * g.a_stride);
      for (int64_t b = 0; b < nb; ++b)
        for (int j = 0; j < 8; ++j) bsum[t * nm + b * 8 + j] = a[b].d * float(a[b].bsums[2 * j] + a[b].bsums[2 * j + 1]);
    }
    for (int64_t r0 = 0; r0 < g.n_rows; r0 += TR) {
      int nr = int(std::min<int64_t>(TR, g.n_rows - r0));
      tiles[nr - 1][nt - 1](g, r0, t0, bsum, mins);
    }
  }
}

}  // namespace mixtile
