// Flash attention over a BF16 KV cache with AVX512-BF16 dot products (vdpbf16ps: 32 multiply-adds
// per instruction, twice an FMA's 16). Same blocks, tiles and vertical online softmax as
// attention-flash-avx512.cc; the operands change: Q (scaled) and the probabilities P are rounded
// to BF16 like the cache (what bf16 flash attention on GPUs does), accumulation stays F32.
//   scores: S^T[t][r] += dot2(Q2^T[j/2][r], K[t][j..j+1]), the K pair broadcast straight from
//           the BF16 tile (no conversion);
//   output: O^T[j][r] += dot2(P2^T[t/2][r], V2[t/2][j]), V2 = rows t and t+1 interleaved per j.
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
inline __m512bh as_bh(__m512 x) { return reinterpret_cast<__m512bh>(x); }

// Round-to-nearest-even of finite floats to BF16, in the low 16 bits of each lane.
inline __m512i bf16_bits(__m512 x) {
  const __m512i b = _mm512_castps_si512(x);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
  return _mm512_srli_epi32(_mm512_add_epi32(b, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF))), 16);
}

// K rows [t0, t0 + bt) of one head, BF16 [BT][d]; rows bt .. round_up(bt, TB) zeroed.
void load_k(const uint16_t* base, int64_t row0, int64_t stride, int bt, int d, uint16_t* dst) {
  for (int t = 0; t < bt; ++t) std::memcpy(dst + t * d, base + row0 + t * stride, size_t(d) * 2);
  for (int t = bt; t % TB != 0; ++t) std::memset(dst + t * d, 0, size_t(d) * 2);
}

// V rows [t0, t0 + bt) as pairs: dst[t/2][j] = V[t][j] | V[t+1][j] << 16 (a missing t+1 is 0).
void load_v_pairs(const uint16_t* base, int64_t row0, int64_t stride, int bt, int d, uint32_t* dst) {
  for (int t = 0; t < bt; t += 2) {
    const uint16_t* a = base + row0 + t * stride;
    const uint16_t* b = a + stride;
    for (int c = 0; c < d; c += 16) {
      const __m512i lo = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + c)));
      const __m512i hi = t + 1 < bt ? _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + c)))
                                    : _mm512_setzero_si512();
      _mm512_store_si512(dst + (t / 2) * d + c, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
    }
  }
}

// s[t][r] = sum_j k[t][j] * q[r][j] for t < nt (a multiple of TB); q2t[j/2][r] holds q's pairs.
template <int RV>
void scores(const uint32_t* q2t, const uint16_t* k, int d, int nt, float* s) {
  for (int t = 0; t < nt; t += TB) {
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
    for (int b = 0; b < TB; ++b)
      for (int v = 0; v < RV; ++v) _mm512_store_ps(s + (t + b) * R + 16 * v, acc[b][v]);
  }
}

// p2[t/2][r] = bf16(p[t][r]) | bf16(p[t+1][r]) << 16 for t < bt (p[bt] = 0 when bt is odd).
template <int RV>
void pair_probs(const float* p, int bt, uint32_t* p2) {
  for (int t = 0; t < bt; t += 2) {
    for (int v = 0; v < RV; ++v) {
      const __m512i lo = bf16_bits(_mm512_load_ps(p + t * R + 16 * v));
      const __m512i hi = t + 1 < bt ? bf16_bits(_mm512_load_ps(p + (t + 1) * R + 16 * v)) : _mm512_setzero_si512();
      _mm512_store_si512(p2 + (t / 2) * R + 16 * v, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
    }
  }
}

// ot[j][r] = ot[j][r] * corr[r] + sum_t v[t][j] * p[t][r], over n2 position pairs.
template <int RV>
void accumulate(const uint32_t* p2, const uint32_t* v2, int d, int n2, const __m512* corr, float* ot) {
  for (int j = 0; j < d; j += JB) {
    __m512 acc[JB][RV];
    for (int b = 0; b < JB; ++b)
      for (int v = 0; v < RV; ++v) acc[b][v] = _mm512_mul_ps(_mm512_load_ps(ot + (j + b) * R + 16 * v), corr[v]);
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

template <int RV>
void run_block(const AttentionArgs& a, const FlashBlock& blk, const int32_t* tokens, int kvh, int64_t begin, int64_t end,
               FlashPartial* part) {
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

  // Q pairs (scaled, BF16); dead rows (rows .. 16 * RV) take the last live row's position, q = 0.
  alignas(64) int32_t rpos[R];
  for (int r = 0; r < 16 * RV; ++r) {
    const bool live = r < rows;
    const int64_t i = flash_row_token(blk, tokens, group, rows, r);
    rpos[r] = a.pos[i];
    const float* q = a.q + (i * a.n_heads + int64_t(kvh) * group + r % group) * d;
    for (int j = 0; j < d; j += 2) {
      q2t[(j / 2) * R + r] =
          live ? uint32_t(fp32_to_bf16(q[j] * a.scale)) | uint32_t(fp32_to_bf16(q[j + 1] * a.scale)) << 16 : 0u;
    }
  }
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
    load_k(k16, base + t0 * a.pos_stride, a.pos_stride, bt, d, kt);
    scores<RV>(q2t, kt, d, nt, s);
    online_softmax<RV>(s, R, t0, bt, nt, t0 + nt - 1 > min_pos, posv, m, l, corr);
    pair_probs<RV>(s, bt, p2);
    load_v_pairs(v16, base + t0 * a.pos_stride, a.pos_stride, bt, d, v2);
    accumulate<RV>(p2, v2, d, (bt + 1) / 2, corr, ot);
  }

  flash_write_rows<RV>(a, blk, tokens, kvh, rows, ot, R, m, l, part);
}

}  // namespace

bool attention_flash_avx512bf16_accepts(const AttentionArgs& a) {
  return a.kv_type == KvType::bf16 && a.head_dim % 16 == 0 && a.head_dim <= D_MAX &&
         a.n_heads / a.n_kv_heads <= FLASH_MAX_ROWS && flash_worth_it(a, pool_threads());
}

void attention_flash_avx512bf16(const AttentionArgs& a) {
  const FlashPlan plan = flash_plan(a, pool_threads());
  const int group = a.n_heads / a.n_kv_heads;
  flash_run(a, plan, [&](const FlashBlock& blk, int kvh, int64_t begin, int64_t end, FlashPartial* part) {
    flash_with_rv(blk.count * group, [&](auto rv) {
      run_block<decltype(rv)::value>(a, blk, plan.tokens.data(), kvh, begin, end, part);
    });
  });
}

}  // namespace mixtile
