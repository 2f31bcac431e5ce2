// Q8_0 weights x Q8_0 activations with AVX-512 VNNI. vpdpbusd needs one unsigned operand, so each
// token tile's activations are first copied to offset-binary bytes (a + 128 = a ^ 0x80) with their
// scales expanded per int32 lane, and each weight pair of blocks starts its accumulator at
// -128 * sum(w) (one vpdpbusd of 0x80 bytes against w), leaving exactly sum(a * w) per lane.
// Layout of the token-tile buffer, per token: for each 64-element pair of blocks
//   [64 bytes a ^ 0x80] and, separately, [16 floats: d(block 2i) x 8 | d(block 2i+1) x 8].
#include <immintrin.h>

#include <vector>

#include "cpu/matmul/matmul.h"

namespace mixtile {
namespace {

constexpr int TT = 8;  // tokens per register tile (1 weight row x 8 tokens)

// 64 weights of blocks 2i, 2i+1 (k even in blocks) or block 2i with zeros (last odd block).
inline __m512i load_pair(const block_q8_0* x, int64_t i, bool two) {
  __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[2 * i].qs));
  __m256i hi = two ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[2 * i + 1].qs)) : _mm256_setzero_si256();
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

inline __m512 scale_pair(uint16_t d0, uint16_t d1) {
  return _mm512_insertf32x8(_mm512_set1_ps(_cvtsh_ss(d0)), _mm256_set1_ps(_cvtsh_ss(d1)), 1);
}

template <int T>
void tile(const GemmArgs& g, int64_t r, const uint8_t* aq, const float* ad, int64_t np) {
  const int64_t nb = g.k / QK8_0;
  const block_q8_0* w = reinterpret_cast<const block_q8_0*>(g.w + size_t(r) * g.w_stride);
  const __m512i bias = _mm512_set1_epi8(char(0x80));
  __m512 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t i = 0; i < np; ++i) {
    bool two = 2 * i + 1 < nb;
    __m512i wv = load_pair(w, i, two);
    __m512i init = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, wv));
    __m512 dw = scale_pair(w[2 * i].d, two ? w[2 * i + 1].d : 0);
    for (int t = 0; t < T; ++t) {
      __m512i p = _mm512_dpbusd_epi32(init, _mm512_loadu_si512(aq + (t * np + i) * 64), wv);
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(dw, _mm512_loadu_ps(ad + (t * np + i) * 16)), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) g.y[t * g.ldy + r] = _mm512_reduce_add_ps(acc[t]);
}

using TileFn = void (*)(const GemmArgs&, int64_t, const uint8_t*, const float*, int64_t);
constexpr TileFn tiles[TT] = {tile<1>, tile<2>, tile<3>, tile<4>, tile<5>, tile<6>, tile<7>, tile<8>};

}  // namespace

void gemm_q8_0_avx512vnni(const GemmArgs& g) {
  const int64_t nb = g.k / QK8_0, np = (nb + 1) / 2;
  thread_local std::vector<uint8_t> qbuf;
  thread_local std::vector<float> dbuf;
  if (qbuf.size() < size_t(TT * np * 64)) qbuf.resize(size_t(TT * np * 64));
  if (dbuf.size() < size_t(TT * np * 16)) dbuf.resize(size_t(TT * np * 16));
  for (int64_t t0 = 0; t0 < g.n_tok; t0 += TT) {
    int nt = int(std::min<int64_t>(TT, g.n_tok - t0));
    for (int t = 0; t < nt; ++t) {
      const block_q8_0* a = reinterpret_cast<const block_q8_0*>(g.a + size_t(t0 + t) * g.a_stride);
      for (int64_t i = 0; i < np; ++i) {
        bool two = 2 * i + 1 < nb;
        // The missing half of an odd last pair holds a = 0 (0x80 offset) against w = 0.
        __m512i v = _mm512_xor_si512(load_pair(a, i, two), _mm512_set1_epi8(char(0x80)));
        _mm512_storeu_si512(qbuf.data() + (t * np + i) * 64, v);
        _mm512_storeu_ps(dbuf.data() + (t * np + i) * 16, scale_pair(a[2 * i].d, two ? a[2 * i + 1].d : 0));
      }
    }
    GemmArgs sub = g;
    sub.y = g.y + t0 * g.ldy;
    for (int64_t r = 0; r < g.n_rows; ++r) tiles[nt - 1](sub, r, qbuf.data(), dbuf.data(), np);
  }
}

}  // namespace mixtile
