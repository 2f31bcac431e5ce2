// AVX-512 flash attention for prefill: one task = one KV head x a block of query tokens of one
// sequence. The block's rows are (token, query head of the GQA group) pairs, up to 64 of them,
// and every vector runs across rows: scores S^T[t][r] = sum_j K[t][j] * Q^T[j][r] broadcast K
// from a tile converted to f32 once (shared by all rows), the online softmax is vertical (no
// horizontal reductions), and O^T[j][r] += V[t][j] * P^T[t][r] broadcast V the same way. KV
// positions go in tiles of 64; the causal mask is applied only on tiles past the block's first
// position. Tasks run longest first so causal blocks (later ones see more KV) balance.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/attention/attention.h"
#include "threadpool.h"
#include "cpu/attention/attention-flash-simd.h"
#include "cpu/attention/attention-flash.h"

namespace mixtile {

namespace {

constexpr int RV_MAX = FLASH_MAX_ROWS / 16;  // row vectors per block
constexpr int R = FLASH_MAX_ROWS;            // row stride of the transposed tiles
constexpr int BT = 64;                       // KV positions per tile
constexpr int TB = 4;                        // positions per score micro-tile (K tile padded to it)
constexpr int JB = 4;                        // head dims per P.V micro-tile
constexpr int D_MAX = 256;

// Rows [t0, t0 + bt) of one KV head as f32 [BT][d]; rows bt .. round_up(bt, TB) zeroed (their
// scores are masked, but they must be finite).
template <KvType T>
void load_tile(const uint8_t* base, int64_t row0, int64_t stride, int bt, int d, float* dst) {
  for (int t = 0; t < bt; ++t) {
    const int64_t src = row0 + t * stride;
    float* o = dst + t * d;
    for (int c = 0; c < d; c += 16) {
      __m512 x;
      if constexpr (T == KvType::f32) {
        x = _mm512_loadu_ps(reinterpret_cast<const float*>(base) + src + c);
      } else {
        __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(reinterpret_cast<const uint16_t*>(base) + src + c));
        if constexpr (T == KvType::f16) {
          x = _mm512_cvtph_ps(h);
        } else {
          x = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
        }
      }
      _mm512_store_ps(o + c, x);
    }
  }
  for (int t = bt; t % TB != 0; ++t) std::fill(dst + t * d, dst + (t + 1) * d, 0.f);
}

// s[t][r] = sum_j k[t][j] * qt[j][r] for t < nt (a multiple of TB); fetches the next tile's K
// rows meanwhile (TB of them per micro-tile).
template <int RV>
void scores(const float* qt, const float* k, int d, int nt, float* s, const RowPrefetch& next_k) {
  for (int t = 0; t < nt; t += TB) {
    next_k.fetch(t, t + TB);
    __m512 acc[TB][RV];
    for (int b = 0; b < TB; ++b)
      for (int v = 0; v < RV; ++v) acc[b][v] = _mm512_setzero_ps();
    const float* kt = k + int64_t(t) * d;
    for (int j = 0; j < d; ++j) {
      __m512 q[RV];
      for (int v = 0; v < RV; ++v) q[v] = _mm512_load_ps(qt + j * R + 16 * v);
      for (int b = 0; b < TB; ++b) {
        const __m512 kb = _mm512_set1_ps(kt[b * d + j]);
        for (int v = 0; v < RV; ++v) acc[b][v] = _mm512_fmadd_ps(q[v], kb, acc[b][v]);
      }
    }
    for (int b = 0; b < TB; ++b)
      for (int v = 0; v < RV; ++v) _mm512_store_ps(s + (t + b) * R + 16 * v, acc[b][v]);
  }
}

// ot[j][r] = ot[j][r] * corr[r] + sum_{t < nt} v[t][j] * p[t][r]; fetches the next tile's V rows
// meanwhile, spread over the d / JB micro-tiles.
template <int RV>
void accumulate(const float* p, const float* vt, int d, int nt, const __m512* corr, float* ot,
                const RowPrefetch& next_v) {
  const int per = (BT + d / JB - 1) / (d / JB);
  for (int j = 0; j < d; j += JB) {
    next_v.fetch(j / JB * per, (j / JB + 1) * per);
    __m512 acc[JB][RV];
    for (int b = 0; b < JB; ++b)
      for (int v = 0; v < RV; ++v) acc[b][v] = _mm512_mul_ps(_mm512_load_ps(ot + (j + b) * R + 16 * v), corr[v]);
    for (int t = 0; t < nt; ++t) {
      __m512 pv[RV];
      for (int v = 0; v < RV; ++v) pv[v] = _mm512_load_ps(p + t * R + 16 * v);
      const float* vr = vt + int64_t(t) * d + j;
      for (int b = 0; b < JB; ++b) {
        const __m512 vb = _mm512_set1_ps(vr[b]);
        for (int v = 0; v < RV; ++v) acc[b][v] = _mm512_fmadd_ps(pv[v], vb, acc[b][v]);
      }
    }
    for (int b = 0; b < JB; ++b)
      for (int v = 0; v < RV; ++v) _mm512_store_ps(ot + (j + b) * R + 16 * v, acc[b][v]);
  }
}

// Per-thread tiles, kept between calls (the pool's threads persist): Q^T and O^T [d][R], the K
// and V tiles [BT][d], scores / probabilities [BT][R].
struct Scratch {
  Tile qt, ot, k, v, s;
};

constexpr int64_t kv_bytes(KvType t) { return t == KvType::f32 ? 4 : 2; }

template <KvType T, int RV>
void run_block(const AttentionArgs& a, const FlashBlock& blk, const int32_t* tokens, int kvh, int64_t begin, int64_t end,
               FlashPartial* part) {
  thread_local Scratch sc;
  const int group = a.n_heads / a.n_kv_heads;
  const int d = a.head_dim;
  const int rows = blk.count * group;
  float* qt = sc.qt.fit(size_t(d) * R);
  float* ot = sc.ot.fit(size_t(d) * R);
  float* kt = sc.k.fit(size_t(BT) * d);
  float* vt = sc.v.fit(size_t(BT) * d);
  float* s = sc.s.fit(size_t(BT) * R);

  // Q^T (scaled), positions per row.
  alignas(64) int32_t rpos[R];
  const __m512 scale = _mm512_set1_ps(a.scale);
  auto pack = [&](const float* q, float* dst) {
    for (int j = 0; j < d; j += 16) _mm512_storeu_ps(dst + j, _mm512_mul_ps(_mm512_loadu_ps(q + j), scale));
  };
  flash_load_q<RV>(a, blk, tokens, kvh, rows, d, pack, qt, R, rpos);
  std::fill(ot, ot + int64_t(d) * R, 0.f);

  __m512i posv[RV];
  __m512 m[RV], l[RV], corr[RV];
  const int32_t min_pos = flash_rows_begin<RV>(rpos, rows, posv, m, l);
  const int64_t base = int64_t(blk.seq) * a.seq_stride + int64_t(kvh) * d;
  for (int64_t t0 = begin; t0 < end; t0 += BT) {
    const int bt = int(std::min<int64_t>(BT, end - t0));
    const int nt = (bt + TB - 1) / TB * TB;
    const int next_bt = int(std::max<int64_t>(0, std::min<int64_t>(BT, end - t0 - BT)));
    const int64_t next0 = (base + (t0 + BT) * a.pos_stride) * kv_bytes(T);
    const int64_t stride = a.pos_stride * kv_bytes(T);
    const RowPrefetch next_k{next_bt ? a.k + next0 : nullptr, stride, next_bt, int(d * kv_bytes(T))};
    const RowPrefetch next_v{next_bt ? a.v + next0 : nullptr, stride, next_bt, int(d * kv_bytes(T))};
    load_tile<T>(a.k, base + t0 * a.pos_stride, a.pos_stride, bt, d, kt);
    scores<RV>(qt, kt, d, nt, s, next_k);
    online_softmax<RV>(s, R, t0, bt, nt, t0 + nt - 1 > min_pos, posv, m, l, corr);
    load_tile<T>(a.v, base + t0 * a.pos_stride, a.pos_stride, bt, d, vt);
    accumulate<RV>(s, vt, d, bt, corr, ot, next_v);
  }

  flash_write_rows<RV>(a, blk, tokens, kvh, rows, ot, R, m, l, part);
}

template <KvType T>
void run(const AttentionArgs& a) {
  const FlashPlan plan = flash_plan(a, pool_threads());
  const int group = a.n_heads / a.n_kv_heads;
  flash_run(a, plan, [&](const FlashBlock& blk, int kvh, int64_t begin, int64_t end, FlashPartial* part) {
    flash_with_rv(blk.count * group, [&](auto rv) {
      run_block<T, decltype(rv)::value>(a, blk, plan.tokens.data(), kvh, begin, end, part);
    });
  });
}

}  // namespace

bool attention_flash_avx512_accepts(const AttentionArgs& a) {
  return a.head_dim % 16 == 0 && a.head_dim <= D_MAX && a.n_heads / a.n_kv_heads <= FLASH_MAX_ROWS &&
         flash_worth_it(a, pool_threads());
}

void attention_flash_avx512(const AttentionArgs& a) {
  switch (a.kv_type) {
    case KvType::f32: run<KvType::f32>(a); break;
    case KvType::f16: run<KvType::f16>(a); break;
    case KvType::bf16: run<KvType::bf16>(a); break;
  }
}

}  // namespace mixtile
