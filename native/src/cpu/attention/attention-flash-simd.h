// Helpers shared by the flash attention entries (attention-flash-avx512*.cc). Internal linkage on
// purpose: each including file compiles them with its own ISA flags.
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>
#include <vector>

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

// x[c] = column c of the 16 x 16 block whose row r is x[r] (32-bit lanes), in place.
inline void transpose16(__m512* x) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(x[i], x[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(x[i], x[i + 1]);
  }
  // x[4g + o], 128-bit lane L: column 4L + o of rows 4g .. 4g + 3.
  for (int i = 0; i < 16; i += 4) {
    for (int k = 0; k < 2; ++k) {
      const __m512d lo = _mm512_castps_pd(t[i + k]), hi = _mm512_castps_pd(t[i + k + 2]);
      x[i + 2 * k] = _mm512_castpd_ps(_mm512_unpacklo_pd(lo, hi));
      x[i + 2 * k + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(lo, hi));
    }
  }
  // Gather lane L of x[o], x[4 + o], x[8 + o], x[12 + o] into x[4L + o].
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm512_shuffle_f32x4(x[i], x[i + 4], 0x88);
    t[i + 4] = _mm512_shuffle_f32x4(x[i], x[i + 4], 0xDD);
    t[i + 8] = _mm512_shuffle_f32x4(x[i + 8], x[i + 12], 0x88);
    t[i + 12] = _mm512_shuffle_f32x4(x[i + 8], x[i + 12], 0xDD);
  }
  for (int i = 0; i < 4; ++i) {
    x[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    x[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
    x[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
    x[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xDD);
  }
}

// The block's Q^T and row positions, 16 rows at a time: pack(q, dst) writes a live row's `cols`
// 32-bit values (q scaled, as F32 or as BF16 pairs) to dst, dead rows (rows .. 16 * RV) are 0 at the
// last live row's position; then 16 x 16 transposes into qt[c * stride + r] (a scalar tail where
// cols is not a multiple of 16).
template <int RV, class Pack>
inline void flash_load_q(const AttentionArgs& a, const FlashBlock& blk, const int32_t* tokens, int kvh, int rows,
                         int cols, Pack&& pack, float* qt, int stride, int32_t* rpos) {
  const int group = a.n_heads / a.n_kv_heads;
  alignas(64) float tmp[16 * 256];
  for (int v = 0; v < RV; ++v) {
    for (int k = 0; k < 16; ++k) {
      const int r = 16 * v + k;
      const int64_t i = flash_row_token(blk, tokens, group, rows, r);
      rpos[r] = a.pos[i];
      if (r < rows) {
        pack(a.q + (i * a.n_heads + int64_t(kvh) * group + r % group) * a.head_dim, tmp + k * cols);
      } else {
        std::fill(tmp + k * cols, tmp + (k + 1) * cols, 0.f);
      }
    }
    int c0 = 0;
    for (; c0 + 16 <= cols; c0 += 16) {
      __m512 x[16];
      for (int k = 0; k < 16; ++k) x[k] = _mm512_loadu_ps(tmp + k * cols + c0);
      transpose16(x);
      for (int c = 0; c < 16; ++c) _mm512_store_ps(qt + (c0 + c) * stride + 16 * v, x[c]);
    }
    for (; c0 < cols; ++c0)
      for (int k = 0; k < 16; ++k) qt[c0 * stride + 16 * v + k] = tmp[k * cols + c0];
  }
}

// The end of a block's work, O^T in ot[j * stride + r]: for a KV split (part), its unnormalized rows with
// their max and sum for flash_run's merge; else each live row divided by its sum, into a.out. Read
// 16 x 16 at a time and transposed (head_dim is a multiple of 16).
template <int RV>
inline void flash_write_rows(const AttentionArgs& a, const FlashBlock& blk, const int32_t* tokens, int kvh, int rows,
                             const float* ot, int stride, const __m512* m, const __m512* l, FlashPartial* part) {
  const int group = a.n_heads / a.n_kv_heads;
  const int d = a.head_dim;
  alignas(64) float scale[16 * RV];
  if (part) {
    alignas(64) float mm[16 * RV], ll[16 * RV];
    for (int v = 0; v < RV; ++v) _mm512_store_ps(mm + 16 * v, m[v]), _mm512_store_ps(ll + 16 * v, l[v]);
    for (int r = 0; r < rows; ++r) part->m[r] = mm[r], part->l[r] = ll[r];
    std::fill(scale, scale + 16 * RV, 1.f);
  } else {
    for (int v = 0; v < RV; ++v) _mm512_store_ps(scale + 16 * v, _mm512_div_ps(_mm512_set1_ps(1.f), l[v]));
  }
  for (int v = 0; v < RV; ++v) {
    for (int j = 0; j < d; j += 16) {
      __m512 x[16];
      for (int c = 0; c < 16; ++c) x[c] = _mm512_load_ps(ot + (j + c) * stride + 16 * v);
      transpose16(x);
      for (int k = 0; k < 16 && 16 * v + k < rows; ++k) {
        const int r = 16 * v + k;
        float* out = part ? part->o + int64_t(r) * d
                          : a.out + (tokens[blk.first + r / group] * a.n_heads + int64_t(kvh) * group + r % group) * d;
        _mm512_storeu_ps(out + j, _mm512_mul_ps(x[k], _mm512_set1_ps(scale[r])));
      }
    }
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

// The K and V of every sequence that brings 2+ query blocks, converted once per call on the pool
// into an entry's tile layout instead of once per block and tile: every block of a sequence reads
// the same positions. Per (sequence, KV head): K then V, `bytes` per position each, in chunks of
// `bt_max` positions (an entry's tile), positions past the sequence's context zero. Decode batches
// (one block per sequence) read each position once either way and convert per tile.
class StagedKv {
 public:
  struct Head {
    const uint8_t* k = nullptr;  // null: not staged
    const uint8_t* v = nullptr;
  };
  StagedKv() = default;
  StagedKv(const StagedKv&) = delete;
  StagedKv& operator=(const StagedKv&) = delete;
  ~StagedKv() { std::free(buf_); }

  // fill(cache row, bt, k, v) converts positions [row, row + bt) (bt <= bt_max; the cache index of
  // the first, as AttentionArgs::k counts elements) into the chunks at k and v (zeroed before).
  template <class Fill>
  void stage(const AttentionArgs& a, const FlashPlan& plan, int bt_max, size_t bytes, Fill&& fill) {
    bt_ = bt_max;
    bytes_ = bytes;
    for (const FlashBlock& b : plan.blocks) {
      auto it = std::find_if(seqs_.begin(), seqs_.end(), [&](const Seq& s) { return s.seq == b.seq; });
      if (it == seqs_.end()) {
        seqs_.push_back({b.seq, b.ctx, 1, 0});
      } else {
        it->ctx = std::max(it->ctx, b.ctx);
        ++it->blocks;
      }
    }
    seqs_.erase(std::remove_if(seqs_.begin(), seqs_.end(), [](const Seq& s) { return s.blocks < 2; }), seqs_.end());
    if (seqs_.empty()) return;
    n_kv_ = a.n_kv_heads;
    std::vector<int64_t> first_task;  // per staged sequence: its first (KV head, chunk) task
    int64_t tasks = 0;
    size_t total = 0;
    for (Seq& s : seqs_) {
      s.off = total;
      total += 2 * size_t(pad(s.ctx)) * bytes_ * size_t(n_kv_);
      first_task.push_back(tasks);
      tasks += pad(s.ctx) / bt_ * n_kv_;
    }
    buf_ = static_cast<uint8_t*>(std::aligned_alloc(64, total));
    if (!buf_) throw std::bad_alloc();
    attention_for(a, tasks, [&](int64_t task, int) {
      size_t i = 0;
      while (i + 1 < seqs_.size() && first_task[i + 1] <= task) ++i;
      const Seq& s = seqs_[i];
      const int64_t chunks = pad(s.ctx) / bt_;
      const int kvh = int((task - first_task[i]) / chunks);
      const int64_t t0 = (task - first_task[i]) % chunks * bt_;
      const int bt = int(std::min<int64_t>(bt_, s.ctx - t0));
      const Head h = head(i, kvh);
      auto* k = const_cast<uint8_t*>(h.k) + size_t(t0) * bytes_;
      auto* v = const_cast<uint8_t*>(h.v) + size_t(t0) * bytes_;
      if (bt < bt_) std::memset(k, 0, size_t(bt_) * bytes_), std::memset(v, 0, size_t(bt_) * bytes_);
      fill(int64_t(s.seq) * a.seq_stride + int64_t(kvh) * a.head_dim + t0 * a.pos_stride, bt, k, v);
    });
  }

  // Sequence seq's staged KV head kvh, or an empty Head where it was not staged.
  Head at(int32_t seq, int kvh) const {
    for (size_t i = 0; i < seqs_.size(); ++i)
      if (seqs_[i].seq == seq) return head(i, kvh);
    return {};
  }

 private:
  struct Seq {
    int32_t seq;
    int64_t ctx;  // positions read: the largest ctx of its blocks
    int blocks;
    size_t off;   // bytes into buf_
  };
  int64_t pad(int64_t ctx) const { return (ctx + bt_ - 1) / bt_ * bt_; }
  Head head(size_t i, int kvh) const {
    const size_t len = size_t(pad(seqs_[i].ctx)) * bytes_;
    const uint8_t* k = buf_ + seqs_[i].off + size_t(kvh) * 2 * len;
    return {k, k + len};
  }
  std::vector<Seq> seqs_;
  uint8_t* buf_ = nullptr;
  int bt_ = 1, n_kv_ = 0;
  size_t bytes_ = 0;
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
