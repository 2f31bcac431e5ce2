// Flash attention over a BF16 KV cache (or an F16 one where AttentionArgs::bf16_dots allows) with
// AVX512-BF16 dot products (vdpbf16ps: 32 multiply-adds per instruction, twice an FMA's 16). Same
// blocks, tiles and vertical online softmax as attention-flash-avx512.cc; the operands change: Q
// (scaled), the probabilities P and an F16 cache's K and V are rounded to BF16 (what bf16 flash
// attention on GPUs does; 8 significant bits instead of F16's 11), accumulation stays F32.
//   scores: S^T[t][r] += dot2(Q2^T[j/2][r], K[t][j..j+1]), the K pair broadcast from BF16 rows;
//   output: O^T[j][r] += dot2(P2^T[t/2][r], V2[t/2][j]), V2 = rows t and t+1 interleaved per j.
// A sequence with 2+ query blocks has its K rows and V pairs converted once per call (StagedKv);
// decode blocks convert per tile. The next tile's K and V rows are prefetched while a tile computes.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/attention/attention-flash-simd.h"
#include "cpu/attention/attention-flash.h"
#include "cpu/attention/attention.h"
#include "threadpool.h"

namespace mixtile {

namespace {

constexpr int R = FLASH_MAX_ROWS;
constexpr int BT = 64;  // KV positions per tile (even: P and V go in pairs)
constexpr int TB = 4;   // positions per score micro-tile
constexpr int JB = 4;   // head dims per output micro-tile
constexpr int D_MAX = 256;

inline __m512bh as_bh(__m512i x) { return reinterpret_cast<__m512bh>(x); }

// 32 BF16 words, a[0..15] then b[0..15], as 16 pairs (a[i], b[i]): two positions' values side by
// side in each lane, the operand layout of vdpbf16ps.
inline __m512i interleave_words(__m512i ab) {
  const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5,
                                       20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return _mm512_permutexvar_epi16(idx, ab);
}

// Pairs (bf16(a[i]), bf16(b[i])), rounded to nearest even.
inline __m512i bf16_pairs(__m512 a, __m512 b) {
  return interleave_words(reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(b, a)));
}

// Pairs (a[i], b[i]) of 16 cache values at a and at b as BF16 (an F16 cache rounded to nearest even).
template <KvType T>
inline __m512i cache_pairs(const uint16_t* a, const uint16_t* b) {
  const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a));
  const __m256i y = b ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b)) : _mm256_setzero_si256();
  if constexpr (T == KvType::f16) return bf16_pairs(_mm512_cvtph_ps(x), _mm512_cvtph_ps(y));
  return interleave_words(_mm512_inserti64x4(_mm512_castsi256_si512(x), y, 1));
}

// K rows [t0, t0 + bt) of one head as BF16 [BT][d] (an F16 cache rounded to nearest even); rows
// bt .. round_up(bt, TB) zeroed.
template <KvType T>
void load_k(const uint16_t* base, int64_t row0, int64_t stride, int bt, int d, uint16_t* dst) {
  for (int t = 0; t < bt; ++t) {
    const uint16_t* src = base + row0 + t * stride;
    if constexpr (T == KvType::bf16) {
      std::memcpy(dst + t * d, src, size_t(d) * 2);
    } else {
      for (int c = 0; c < d; c += 16) {
        const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + c));
        const __m256bh x = _mm512_cvtneps_pbh(_mm512_cvtph_ps(h));
        _mm256_store_si256(reinterpret_cast<__m256i*>(dst + t * d + c), reinterpret_cast<__m256i>(x));
      }
    }
  }
  for (int t = bt; t % TB != 0; ++t) std::memset(dst + t * d, 0, size_t(d) * 2);
}

// V rows [t0, t0 + bt) as pairs: dst[t/2][j] = V[t][j] | V[t+1][j] << 16 (a missing t+1 is 0).
template <KvType T>
void load_v_pairs(const uint16_t* base, int64_t row0, int64_t stride, int bt, int d, uint32_t* dst) {
  for (int t = 0; t < bt; t += 2) {
    const uint16_t* a = base + row0 + t * stride;
    const uint16_t* b = a + stride;
    for (int c = 0; c < d; c += 16) {
      _mm512_store_si512(dst + (t / 2) * d + c, cache_pairs<T>(a + c, t + 1 < bt ? b + c : nullptr));
    }
  }
}

// s[t][r] = sum_j k[t][j] * q[r][j] for t < nt (a multiple of TB); q2t[j/2][r] holds q's pairs.
// When `masked`, positions t0 + t past row r's own (tile padding included) score FLASH_MASKED.
// mx[v] = the max over t of each row vector's scores. Fetches the next tile's K rows meanwhile (TB
// of them per micro-tile).
template <int RV>
void scores(const uint32_t* q2t, const uint16_t* k, int d, int nt, int64_t t0, bool masked, const __m512i* posv,
            float* s, __m512* mx, const RowPrefetch& next_k) {
  for (int v = 0; v < RV; ++v) mx[v] = _mm512_set1_ps(-INFINITY);
  for (int t = 0; t < nt; t += TB) {
    next_k.fetch(t, t + TB);
    __m512 acc[TB][RV];
    for (int b = 0; b < TB; ++b)
      for (int v = 0; v < RV; ++v) acc[b][v] = _mm512_setzero_ps();
    const uint16_t* kt = k + int64_t(t) * d;
    for (int j = 0; j < d; j += 2) {
      __m512i q[RV];
      for (int v = 0; v < RV; ++v) q[v] = _mm512_load_si512(q2t + (j / 2) * R + 16 * v);
      for (int b = 0; b < TB; ++b) {
        uint32_t pair;
        std::memcpy(&pair, kt + b * d + j, 4);
        const __m512i kb = _mm512_set1_epi32(int32_t(pair));
        for (int v = 0; v < RV; ++v) acc[b][v] = _mm512_dpbf16_ps(acc[b][v], as_bh(q[v]), as_bh(kb));
      }
    }
    for (int b = 0; b < TB; ++b) {
      for (int v = 0; v < RV; ++v) {
        __m512 x = acc[b][v];
        if (masked) {
          const __mmask16 past = _mm512_cmpgt_epi32_mask(_mm512_set1_epi32(int32_t(t0 + t + b)), posv[v]);
          x = _mm512_mask_mov_ps(x, past, _mm512_set1_ps(FLASH_MASKED));
        }
        mx[v] = _mm512_max_ps(mx[v], x);
        _mm512_store_ps(s + (t + b) * R + 16 * v, x);
      }
    }
  }
}

// e^x as exp512 (cpu/simd/exp-avx512.h) with a degree-4 polynomial: relative error < 5e-5, for
// probabilities rounded to BF16 (8 significant bits) right after.
inline __m512 exp512_bf16(__m512 x) {
  x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.f)), _mm512_set1_ps(-87.f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT);
  const __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693147181f), x);
  __m512 p = _mm512_set1_ps(1.f / 24);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(p, n);
}

// A running max may lag the true one by this much (p <= e^8): the accumulator's rescale is
// skipped on tiles where no row's max grows past it (most tiles deep in a context). Exact either
// way: o and l are both relative to the same m.
constexpr float LAZY_MAX = 8.f;

// The online softmax of one tile of scores s[t][r] (masked, tile max mx from scores): each row's
// m grows to the tile's max only where that exceeds m + LAZY_MAX, corr = e^(m - m'), l' = l corr +
// sum_t p, and p = e^(s - m') is written as BF16 pairs p2[t/2][r] = (p[t][r], p[t+1][r]) for
// t < bt (p[bt] = 0 when bt is odd). p takes exp512_bf16 (relative error 4e-5, under the BF16
// rounding that follows); l adds the unrounded p. Returns false when corr = 1 for every row.
template <int RV>
bool softmax_pairs(const float* s, int bt, const __m512* mx, __m512* m, __m512* l, __m512* corr, uint32_t* p2) {
  bool rescale = false;
  for (int v = 0; v < RV; ++v) {
    const __mmask16 grow = _mm512_cmp_ps_mask(mx[v], _mm512_add_ps(m[v], _mm512_set1_ps(LAZY_MAX)), _CMP_GT_OQ);
    const __m512 m_new = _mm512_mask_mov_ps(m[v], grow, mx[v]);
    corr[v] = _mm512_set1_ps(1.f);
    if (grow) {
      corr[v] = exp512(_mm512_sub_ps(m[v], m_new));
      rescale = true;
    }
    __m512 sum = _mm512_setzero_ps();
    for (int t = 0; t < bt; t += 2) {
      const __m512 p0 = exp512_bf16(_mm512_sub_ps(_mm512_load_ps(s + t * R + 16 * v), m_new));
      const __m512 p1 = t + 1 < bt ? exp512_bf16(_mm512_sub_ps(_mm512_load_ps(s + (t + 1) * R + 16 * v), m_new))
                                   : _mm512_setzero_ps();
      sum = _mm512_add_ps(sum, _mm512_add_ps(p0, p1));
      _mm512_store_si512(p2 + (t / 2) * R + 16 * v, bf16_pairs(p0, p1));
    }
    l[v] = _mm512_fmadd_ps(l[v], corr[v], sum);
    m[v] = m_new;
  }
  return rescale;
}

// ot[j][r] = ot[j][r] * corr[r] + sum_t v[t][j] * p[t][r], over n2 position pairs (corr null: 1).
// Fetches the next tile's V rows meanwhile, spread over the d / JB micro-tiles.
template <int RV>
void accumulate(const uint32_t* p2, const uint32_t* v2, int d, int n2, const __m512* corr, float* ot,
                const RowPrefetch& next_v) {
  const int per = (BT + d / JB - 1) / (d / JB);
  for (int j = 0; j < d; j += JB) {
    next_v.fetch(j / JB * per, (j / JB + 1) * per);
    __m512 acc[JB][RV];
    for (int b = 0; b < JB; ++b)
      for (int v = 0; v < RV; ++v) {
        acc[b][v] = _mm512_load_ps(ot + (j + b) * R + 16 * v);
        if (corr) acc[b][v] = _mm512_mul_ps(acc[b][v], corr[v]);
      }
    for (int t = 0; t < n2; ++t) {
      __m512i pv[RV];
      for (int v = 0; v < RV; ++v) pv[v] = _mm512_load_si512(p2 + t * R + 16 * v);
      const uint32_t* vr = v2 + int64_t(t) * d + j;
      for (int b = 0; b < JB; ++b) {
        const __m512i vb = _mm512_set1_epi32(int32_t(vr[b]));
        for (int v = 0; v < RV; ++v) acc[b][v] = _mm512_dpbf16_ps(acc[b][v], as_bh(pv[v]), as_bh(vb));
      }
    }
    for (int b = 0; b < JB; ++b)
      for (int v = 0; v < RV; ++v) _mm512_store_ps(ot + (j + b) * R + 16 * v, acc[b][v]);
  }
}

// Per-thread tiles (Tile holds floats; the BF16 / pair tiles reuse that storage).
struct Scratch {
  Tile q2t, ot, k, v2, s, p2;
};

template <KvType T, int RV>
void run_block(const AttentionArgs& a, const FlashBlock& blk, const int32_t* tokens, int kvh, int64_t begin, int64_t end,
               const StagedKv::Head& staged, FlashPartial* part) {
  thread_local Scratch sc;
  const int group = a.n_heads / a.n_kv_heads;
  const int d = a.head_dim;
  const int rows = blk.count * group;
  auto* q2t = reinterpret_cast<uint32_t*>(sc.q2t.fit(size_t(d / 2) * R));
  float* ot = sc.ot.fit(size_t(d) * R);
  auto* kt = reinterpret_cast<uint16_t*>(sc.k.fit(size_t(BT) * d / 2));
  auto* v2 = reinterpret_cast<uint32_t*>(sc.v2.fit(size_t(BT / 2) * d));
  float* s = sc.s.fit(size_t(BT) * R);
  auto* p2 = reinterpret_cast<uint32_t*>(sc.p2.fit(size_t(BT / 2) * R));

  // Q pairs (scaled, BF16), (q[j], q[j+1]) per 32-bit word.
  alignas(64) int32_t rpos[R];
  const __m512 scale = _mm512_set1_ps(a.scale);
  auto pack = [&](const float* q, float* dst) {
    int j = 0;
    for (; j + 32 <= d; j += 32) {
      const __m512bh x = _mm512_cvtne2ps_pbh(_mm512_mul_ps(_mm512_loadu_ps(q + j + 16), scale),
                                             _mm512_mul_ps(_mm512_loadu_ps(q + j), scale));
      _mm512_storeu_ps(dst + j / 2, reinterpret_cast<__m512>(x));
    }
    if (j < d) {  // d = 16 (mod 32)
      const __m256bh x = _mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_loadu_ps(q + j), scale));
      _mm256_storeu_ps(dst + j / 2, reinterpret_cast<__m256>(x));
    }
  };
  flash_load_q<RV>(a, blk, tokens, kvh, rows, d / 2, pack, reinterpret_cast<float*>(q2t), R, rpos);
  std::fill(ot, ot + int64_t(d) * R, 0.f);

  __m512i posv[RV];
  __m512 m[RV], l[RV], corr[RV];
  const int32_t min_pos = flash_rows_begin<RV>(rpos, rows, posv, m, l);
  const auto* k16 = reinterpret_cast<const uint16_t*>(a.k);
  const auto* v16 = reinterpret_cast<const uint16_t*>(a.v);
  const int64_t base = int64_t(blk.seq) * a.seq_stride + int64_t(kvh) * d;
  for (int64_t t0 = begin; t0 < end; t0 += BT) {
    const int bt = int(std::min<int64_t>(BT, end - t0));
    const int nt = (bt + TB - 1) / TB * TB;
    const int next_bt = int(std::max<int64_t>(0, std::min<int64_t>(BT, end - t0 - BT)));
    const int64_t row0 = base + t0 * a.pos_stride, next0 = row0 + BT * a.pos_stride;
    const uint16_t* k = kt;
    const uint32_t* v = v2;
    RowPrefetch next_k, next_v;
    if (staged.k) {
      k = reinterpret_cast<const uint16_t*>(staged.k) + t0 * d;
      v = reinterpret_cast<const uint32_t*>(staged.v) + t0 / 2 * d;
      if (next_bt) {
        next_k = {reinterpret_cast<const uint8_t*>(k + BT * d), d * 2, next_bt, d * 2};
        next_v = {reinterpret_cast<const uint8_t*>(v + BT / 2 * d), d * 4, (next_bt + 1) / 2, d * 4};
      }
    } else {
      load_k<T>(k16, row0, a.pos_stride, bt, d, kt);
      if (next_bt) {
        next_k = {reinterpret_cast<const uint8_t*>(k16 + next0), a.pos_stride * 2, next_bt, d * 2};
        next_v = {reinterpret_cast<const uint8_t*>(v16 + next0), a.pos_stride * 2, next_bt, d * 2};
      }
    }
    __m512 mx[RV];
    scores<RV>(q2t, k, d, nt, t0, t0 + nt - 1 > min_pos, posv, s, mx, next_k);
    const bool rescale = softmax_pairs<RV>(s, bt, mx, m, l, corr, p2);
    if (!staged.k) load_v_pairs<T>(v16, row0, a.pos_stride, bt, d, v2);
    accumulate<RV>(p2, v, d, (bt + 1) / 2, rescale ? corr : nullptr, ot, next_v);
  }

  flash_write_rows<RV>(a, blk, tokens, kvh, rows, ot, R, m, l, part);
}

template <KvType T>
void run(const AttentionArgs& a) {
  const FlashPlan plan = flash_plan(a, pool_threads());
  // Staged: K rows [BT][d] BF16 and V pairs [BT / 2][d] per chunk, 2 d bytes per position each.
  StagedKv staged;
  const auto* k16 = reinterpret_cast<const uint16_t*>(a.k);
  const auto* v16 = reinterpret_cast<const uint16_t*>(a.v);
  staged.stage(a, plan, BT, size_t(a.head_dim) * 2, [&](int64_t row0, int bt, uint8_t* k, uint8_t* v) {
    load_k<T>(k16, row0, a.pos_stride, bt, a.head_dim, reinterpret_cast<uint16_t*>(k));
    load_v_pairs<T>(v16, row0, a.pos_stride, bt, a.head_dim, reinterpret_cast<uint32_t*>(v));
  });
  const int group = a.n_heads / a.n_kv_heads;
  flash_run(a, plan, [&](const FlashBlock& blk, int kvh, int64_t begin, int64_t end, FlashPartial* part) {
    flash_with_rv(blk.count * group, [&](auto rv) {
      run_block<T, decltype(rv)::value>(a, blk, plan.tokens.data(), kvh, begin, end, staged.at(blk.seq, kvh), part);
    });
  });
}

}  // namespace

bool attention_flash_avx512bf16_accepts(const AttentionArgs& a) {
  const bool kv = a.kv_type == KvType::bf16 || (a.kv_type == KvType::f16 && a.bf16_dots);
  return kv && a.head_dim % 16 == 0 && a.head_dim <= D_MAX && a.n_heads / a.n_kv_heads <= FLASH_MAX_ROWS &&
         flash_worth_it(a, pool_threads());
}

void attention_flash_avx512bf16(const AttentionArgs& a) {
  if (a.kv_type == KvType::f16) {
    run<KvType::f16>(a);
  } else {
    run<KvType::bf16>(a);
  }
}

}  // namespace mixtile
