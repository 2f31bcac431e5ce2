// AVX2 paths for Q4_K, Q6_K and Q8_0 weights (int8 activations, vpmaddubsw u8 x s8 -> s16 pairs,
// vpmaddwd with the sub-block scales -> s32), for CPUs without AVX-512. One weight row x 4 tokens;
// the weight row's super-block is unpacked once per token tile. Min / offset terms use the Q8_K
// bsums in float after the main loop, as the AVX-512 kernels do.
#include <immintrin.h>

#include <vector>

#include "cpu/matmul/matmul.h"

namespace mixtile {
namespace {

constexpr int TT = 4;

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// sc[0..7] = scales, sc[8..15] = mins of a Q4_K block (ggml get_scale_min_k4, all 8 at once).
inline void q4k_scales(const uint8_t* s, uint8_t out[16]) {
  for (int j = 0; j < 8; ++j) get_scale_min_k4(j, s, &out[j], &out[8 + j]);
}

template <int T>
void q4k_tile(const GemmArgs& g, int64_t r, int64_t t0, const float* bsum, float* mins) {
  const int64_t nb = g.k / QK_K, nm = nb * 8;
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  const block_q4_K* w = reinterpret_cast<const block_q4_K*>(g.w + size_t(r) * g.w_stride);
  const block_q8_K* a[T];
  for (int t = 0; t < T; ++t) a[t] = reinterpret_cast<const block_q8_K*>(g.a + size_t(t0 + t) * g.a_stride);
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t sm[16];
    q4k_scales(w[b].scales, sm);
    float d = fp16_to_fp32(w[b].d), dmin = fp16_to_fp32(w[b].dmin);
    for (int j = 0; j < 8; ++j) mins[b * 8 + j] = -dmin * float(sm[8 + j]);
    __m256i q[8];
    for (int c = 0; c < 4; ++c) {
      __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs + 32 * c));
      q[2 * c] = _mm256_and_si256(v, m4);
      q[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    }
    for (int t = 0; t < T; ++t) {
      __m256i s = _mm256_setzero_si256();
      for (int j = 0; j < 8; ++j) {
        __m256i p = _mm256_maddubs_epi16(q[j], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[t][b].qs + 32 * j)));
        s = _mm256_add_epi32(s, _mm256_madd_epi16(p, _mm256_set1_epi16(sm[j])));
      }
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(d * a[t][b].d), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) {
    float m = 0;
    for (int64_t i = 0; i < nm; ++i) m += mins[i] * bsum[t * nm + i];
    g.y[(t0 + t) * g.ldy + r] = hsum(acc[t]) + m;
  }
}

template <int T>
void q6k_tile(const GemmArgs& g, int64_t r, int64_t t0, const float* bsum, float* off) {
  const int64_t nb = g.k / QK_K, nm = nb * 16;
  const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(0x03);
  const block_q6_K* w = reinterpret_cast<const block_q6_K*>(g.w + size_t(r) * g.w_stride);
  const block_q8_K* a[T];
  for (int t = 0; t < T; ++t) a[t] = reinterpret_cast<const block_q8_K*>(g.a + size_t(t0 + t) * g.a_stride);
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const block_q6_K& x = w[b];
    float d = fp16_to_fp32(x.d);
    for (int s = 0; s < 16; ++s) off[b * 16 + s] = -32.f * d * float(x.scales[s]);
    // q[j] = elements 32j .. 32j+31 (unsigned 0..63), see dequant.cc for the bit layout.
    __m256i q[8];
    for (int n = 0; n < 2; ++n) {
      __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.ql + 64 * n));
      __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.ql + 64 * n + 32));
      __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qh + 32 * n));
      q[4 * n + 0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(h, m3), 4));
      q[4 * n + 1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m3), 4));
      q[4 * n + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                     _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m3), 4));
      q[4 * n + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                     _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m3), 4));
    }
    for (int t = 0; t < T; ++t) {
      __m256i s = _mm256_setzero_si256();
      for (int j = 0; j < 8; ++j) {
        // 16 int16 pair sums: lanes 0-7 = sub-block 2j, 8-15 = sub-block 2j+1 (|p| <= 2*63*127).
        __m256i p = _mm256_maddubs_epi16(q[j], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[t][b].qs + 32 * j)));
        __m256i sc = _mm256_set_m128i(_mm_set1_epi16(x.scales[2 * j + 1]), _mm_set1_epi16(x.scales[2 * j]));
        s = _mm256_add_epi32(s, _mm256_madd_epi16(p, sc));
      }
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(d * a[t][b].d), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) {
    float m = 0;
    for (int64_t i = 0; i < nm; ++i) m += off[i] * bsum[t * nm + i];
    g.y[(t0 + t) * g.ldy + r] = hsum(acc[t]) + m;
  }
}

template <int T>
void q8_0_tile(const GemmArgs& g, int64_t r, int64_t t0, const float*, float*) {
  const int64_t nb = g.k / QK8_0;
  const block_q8_0* w = reinterpret_cast<const block_q8_0*>(g.w + size_t(r) * g.w_stride);
  const block_q8_0* a[T];
  for (int t = 0; t < T; ++t) a[t] = reinterpret_cast<const block_q8_0*>(g.a + size_t(t0 + t) * g.a_stride);
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t b = 0; b < nb; ++b) {
    __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs));
    __m256i aw = _mm256_sign_epi8(wv, wv);  // |w| as unsigned; the sign moves onto a
    float d = fp16_to_fp32(w[b].d);
    for (int t = 0; t < T; ++t) {
      __m256i av = _mm256_sign_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[t][b].qs)), wv);
      __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, av), ones);
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(d * fp16_to_fp32(a[t][b].d)), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) g.y[(t0 + t) * g.ldy + r] = hsum(acc[t]);
}

using TileFn = void (*)(const GemmArgs&, int64_t, int64_t, const float*, float*);

// bsum_of: the per-token float terms the tile's min/offset product needs ([nm] per token).
template <int PER_BLOCK, const TileFn* TILES>
void run(const GemmArgs& g, void (*bsum_of)(const block_q8_K&, float*)) {
  const int64_t nb = g.k / QK_K, nm = nb * PER_BLOCK;
  thread_local std::vector<float> scratch;
  if (scratch.size() < size_t((TT + 1) * nm)) scratch.resize(size_t((TT + 1) * nm));
  float* bsum = scratch.data();
  float* rowbuf = bsum + TT * nm;
  for (int64_t t0 = 0; t0 < g.n_tok; t0 += TT) {
    int nt = int(std::min<int64_t>(TT, g.n_tok - t0));
    if (bsum_of) {
      for (int t = 0; t < nt; ++t) {
        const block_q8_K* a = reinterpret_cast<const block_q8_K*>(g.a + size_t(t0 + t) * g.a_stride);
        for (int64_t b = 0; b < nb; ++b) bsum_of(a[b], bsum + t * nm + b * PER_BLOCK);
      }
    }
    for (int64_t r = 0; r < g.n_rows; ++r) TILES[nt - 1](g, r, t0, bsum, rowbuf);
  }
}

constexpr TileFn Q4K[TT] = {q4k_tile<1>, q4k_tile<2>, q4k_tile<3>, q4k_tile<4>};
constexpr TileFn Q6K[TT] = {q6k_tile<1>, q6k_tile<2>, q6k_tile<3>, q6k_tile<4>};
constexpr TileFn Q80[TT] = {q8_0_tile<1>, q8_0_tile<2>, q8_0_tile<3>, q8_0_tile<4>};

}  // namespace

void gemm_q4_k_avx2(const GemmArgs& g) {
  run<8, Q4K>(g, [](const block_q8_K& a, float* out) {
    for (int j = 0; j < 8; ++j) out[j] = a.d * float(a.bsums[2 * j] + a.bsums[2 * j + 1]);
  });
}

void gemm_q6_k_avx2(const GemmArgs& g) {
  run<16, Q6K>(g, [](const block_q8_K& a, float* out) {
    for (int s = 0; s < 16; ++s) out[s] = a.d * float(a.bsums[s]);
  });
}

void gemm_q8_0_avx2(const GemmArgs& g) {
  for (int64_t t0 = 0; t0 < g.n_tok; t0 += TT) {
    int nt = int(std::min<int64_t>(TT, g.n_tok - t0));
    for (int64_t r = 0; r < g.n_rows; ++r) Q80[nt - 1](g, r, t0, nullptr, nullptr);
  }
}

}  // namespace mixtile
