// Helpers shared by the flash attention entries (attention-flash-avx512*.cc). Internal linkage on
// purpose: each including file compiles them with its own ISA flags.
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <type_traits>

#include "cpu/attention/attention-flash.h"
#include "cpu/attention/attention.h"
#include "cpu/simd/exp-avx512.h"

namespace mixtile {
namespace {

// Score of a masked position: finite, so a row that sees only masked positions in a KV split
// keeps a finite max (its partial then weighs e^(-1e30 - m) = 0 in the merge) instead of NaN.
constexpr float FLASH_MASKED = -1e30f;

// One KV tile's online softmax over scores s[t][r] (row stride `stride` floats, vectors across
// rows), in place: positions past a row's own (tile padding included) are masked when `masked`,
// then m' = max(m, max_t s), s = p = e^(s - m') for t < bt, l' = l e^(m - m') + sum_t p, and
// corr = e^(m - m') for the caller's accumulator (m = -inf on the first tile: e^-87, times 0).
template <int RV>
inline void online_softmax(float* s, int stride, int64_t t0, int bt, int nt, bool masked, const __m512i* posv,
                           __m512* m, __m512* l, __m512* corr) {
  for (int v = 0; v < RV; ++v) {
    __m512 mx = m[v];
    for (int t = 0; t < nt; ++t) {
      __m512 x = _mm512_load_ps(s + t * stride + 16 * v);
      if (masked) {
        const __mmask16 past = _mm512_cmpgt_epi32_mask(_mm512_set1_epi32(int32_t(t0 + t)), posv[v]);
        x = _mm512_mask_mov_ps(x, past, _mm512_set1_ps(FLASH_MASKED));
        _mm512_store_ps(s + t * stride + 16 * v, x);
      }
      mx = _mm512_max_ps(mx, x);
    }
    corr[v] = exp512(_mm512_sub_ps(m[v], mx));
    __m512 sum = _mm512_setzero_ps();
    for (int t = 0; t < bt; ++t) {
      const __m512 p = exp512(_mm512_sub_ps(_mm512_load_ps(s + t * stride + 16 * v), mx));
      _mm512_store_ps(s + t * stride + 16 * v, p);
      sum = _mm512_add_ps(sum, p);
    }
    l[v] = _mm512_fmadd_ps(l[v], corr[v], sum);
    m[v] = mx;
  }
}

// Row r of a block is query head kvh * group + r % group of token tokens[blk.first + r / group]; the
// dead rows past `rows` (up to 16 * RV, the last vector's padding) stand for the last live row (their
// q is 0, so they stay finite, and they are never written out). Returns row r's token.
inline int64_t flash_row_token(const FlashBlock& blk, const int32_t* tokens, int group, int rows, int r) {
  return tokens[blk.first + (r < rows ? r / group : blk.count - 1)];
}

// A block's online-softmax state at its start, from each row's position rpos[16 * RV]: positions as
// vectors (the causal mask), running max -inf and sum 0. Returns the smallest live position (tiles
// reaching past it need the mask).
template <int RV>
inline int32_t flash_rows_begin(const int32_t* rpos, int rows, __m512i* posv, __m512* m, __m512* l) {
  int32_t min_pos = rpos[0];
  for (int r = 1; r < rows; ++r) min_pos = std::min(min_pos, rpos[r]);
  for (int v = 0; v < RV; ++v) {
    posv[v] = _mm512_load_si512(rpos + 16 * v);
    m[v] = _mm512_set1_ps(-INFINITY);
    l[v] = _mm512_setzero_ps();
  }
  return min_pos;
}

// Calls run(std::integral_constant<int, RV>) with RV = the vectors of 16 rows that `rows` rows need (1..4).
template <class F>
inline void flash_with_rv(int rows, F&& run) {
  switch ((rows + 15) / 16) {
    case 1: run(std::integral_constant<int, 1>{}); break;
    case 2: run(std::integral_constant<int, 2>{}); break;
    case 3: run(std::integral_constant<int, 3>{}); break;
    default: run(std::integral_constant<int, 4>{}); break;
  }
}

// The end of a block's work, O^T in ot[j * stride + r]: for a KV split (part), its unnormalized rows with
// their max and sum for flash_run's merge; else each live row divided by its sum, into a.out.
template <int RV>
inline void flash_write_rows(const AttentionArgs& a, const FlashBlock& blk, const int32_t* tokens, int kvh, int rows,
                             const float* ot, int stride, const __m512* m, const __m512* l, FlashPartial* part) {
  const int group = a.n_heads / a.n_kv_heads;
  const int d = a.head_dim;
  if (part) {
    alignas(64) float mm[16 * RV], ll[16 * RV];
    for (int v = 0; v < RV; ++v) _mm512_store_ps(mm + 16 * v, m[v]), _mm512_store_ps(ll + 16 * v, l[v]);
    for (int r = 0; r < rows; ++r) {
      part->m[r] = mm[r];
      part->l[r] = ll[r];
      for (int j = 0; j < d; ++j) part->o[r * d + j] = ot[j * stride + r];
    }
    return;
  }
  alignas(64) float inv[16 * RV];
  for (int v = 0; v < RV; ++v) _mm512_store_ps(inv + 16 * v, _mm512_div_ps(_mm512_set1_ps(1.f), l[v]));
  for (int r = 0; r < rows; ++r) {
    const int64_t i = tokens[blk.first + r / group];
    float* out = a.out + (i * a.n_heads + int64_t(kvh) * group + r % group) * d;
    for (int j = 0; j < d; ++j) out[j] = ot[j * stride + r] * inv[r];
  }
}

// Rows of the next KV tile, fetched into cache while this tile computes: deep in the cache the tile
// loads otherwise wait on L3 / DRAM (at 8192 positions, f16, 2 threads, 40% of a block's time).
struct RowPrefetch {
  const uint8_t* base = nullptr;  // row 0
  int64_t stride = 0;             // bytes between rows
  int rows = 0;                   // rows in the next tile (0: none)
  int bytes = 0;                  // bytes per row
  // Rows [r0, r1) (clipped to `rows`).
  void fetch(int r0, int r1) const {
    for (int r = r0; r < std::min(r1, rows); ++r)
      for (int c = 0; c < bytes; c += 64) _mm_prefetch(reinterpret_cast<const char*>(base + r * stride + c), _MM_HINT_T0);
  }
};

// A 64-byte aligned float buffer that only grows.
struct Tile {
  float* p = nullptr;
  size_t n = 0;
  Tile() = default;
  Tile(const Tile&) = delete;
  Tile& operator=(const Tile&) = delete;
  ~Tile() { std::free(p); }
  float* fit(size_t k) {
    if (k > n) {
      std::free(p);
      p = static_cast<float*>(std::aligned_alloc(64, (k * sizeof(float) + 63) / 64 * 64));
      if (!p) throw std::bad_alloc();
      n = k;
    }
    return p;
  }
};

}  // namespace
}  // namespace mixtile
