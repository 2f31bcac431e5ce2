// The routed-experts op on packed panels: group tokens by expert, convert each expert's tokens
// once (BF16, or INT8 per token per group), gate+up fused with SiLU·up, down scaled by the
// routing weight, then a per-token sum. AMX for experts with >= min_tokens tokens, AVX-512 below.
//
// Schedule (each phase one parallel_for over tasks, so a barrier sits between phases):
//   1 convert  tasks = 16-row blocks of the grouped activations  A_e [M_pad][hidden_pad]
//   2 gate+up  tasks = (expert, 128-row chunk, 64-column block of ffn): the block's 4 fused
//              panels (gate+up rows for 64 h columns, 2 x 64 x hidden weights, 512 KiB BF16 at
//              hidden 2048) stay in L2 while the row chunk runs over them; h is written already
//              converted for down (a 64-column block is one INT8 group of 64, or two of 32; the
//              block widens to h's quantization group where that is larger: INT8 g128/g256,
//              Q4K activations per 128/256).
//   3 down     tasks = (expert, 128-row chunk, 128-column block of hidden): Y_pairs rows.
//   4 sum      tasks = token blocks: y[t] = sum_j Y_pairs[pair(t, j)].
// Splitting N (and M for big experts) across threads keeps each weight block in one core's L2;
// K is blocked inside the kernels (kernels-amx.cc) for chunks over 32 rows, so the panel block
// stays in L1 while the row pairs run over it; panels are prefetched 8 K steps ahead.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "cpu/amx/amx.h"
#include "cpu/amx/kernels.h"
#include "threadpool.h"

namespace mixtile::amx {

namespace {

constexpr int kChunkRows = 128;   // rows of an expert's tokens per task
constexpr int kUpBlockCols = 64;  // h columns per gate+up task (4 fused panels)
constexpr int kDownBlockCols = 128;

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// Grow-only 64-byte-aligned scratch (one set per process; calls are serialised by a mutex).
struct Scratch {
  void* p = nullptr;
  size_t size = 0;
  template <class T>
  T* get(size_t n) {
    const size_t bytes = (n * sizeof(T) + 63) / 64 * 64;
    if (bytes > size) {
      std::free(p);
      p = std::aligned_alloc(64, bytes);
      if (!p) throw std::bad_alloc();
      size = bytes;
    }
    return static_cast<T*>(p);
  }
};

// Per thread: C [kChunkRows][32] (64-byte aligned) and the h block [kChunkRows][block cols].
struct ThreadScratch {
  std::vector<float> c, h;
  float* C() {
    if (c.empty()) c.resize(kChunkRows * kPanelCols + 16);
    return reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(c.data()) + 63) & ~uintptr_t(63));
  }
};
thread_local ThreadScratch tls;

// Rows a kernel runs for a chunk starting at m0: AMX takes whole 16-row tiles (zero padding);
// the AVX-512 path only the real tokens rounded up to its 4-row step (still inside the padding).
int chunk_rows(int64_t m0, int64_t m_pad, int64_t count, bool use_amx) {
  const int64_t rows = std::min<int64_t>(kChunkRows, (use_amx ? m_pad : round_up(count, 4)) - m0);
  return int(std::max<int64_t>(rows, 0));
}

// exp on 16 lanes: 2^n * p(f), f = x - n ln2 in [-ln2/2, ln2/2], degree-6 Taylor (rel. err < 3e-7).
inline __m512 exp16(__m512 x) {
  x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.0f)), _mm512_set1_ps(-88.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 f = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145752f), x);
  f = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860677e-6f), f);
  __m512 p = _mm512_set1_ps(1.0f / 720);
  for (float c : {1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f}) p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(c));
  return _mm512_scalef_ps(p, n);
}

// h[0..16) = SiLU(gate[0..16)) * up[0..16).
inline void silu_mul16(const float* gate, const float* up, float* h) {
  const __m512 g = _mm512_loadu_ps(gate);
  const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), g));
  _mm512_storeu_ps(h, _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), _mm512_loadu_ps(up)));
}

// scales[0 .. n) per-group slots where groups of `factor` slots were quantized as one (their scale
// in the first `n / factor` entries): each value into all of its slots (back to front: in place).
void spread_scales(float* scales, int64_t n, int factor) {
  if (factor <= 1) return;
  for (int64_t i = n - 1; i >= 0; --i) scales[i] = scales[i / factor];
}

std::mutex forward_mutex;  // guards the shared scratch and the stats
ForwardStats stats;

double since(std::chrono::steady_clock::time_point& t) {
  const auto now = std::chrono::steady_clock::now();
  const double s = std::chrono::duration<double>(now - t).count();
  t = now;
  return s;
}

}  // namespace

ForwardStats last_forward_stats() {
  std::lock_guard<std::mutex> lock(forward_mutex);
  return stats;
}

void experts_forward(const PackedExperts& pe, const ForwardArgs& a) {
  static Scratch s_tok, s_w, s_pos, s_act, s_act_scale, s_act_sum, s_h, s_h_scale, s_h_sum, s_y;
  std::lock_guard<std::mutex> lock(forward_mutex);
  auto t = std::chrono::steady_clock::now();
  const auto t_start = t;
  stats = ForwardStats{};

  const int64_t E = pe.n_expert, H = pe.hidden;
  // INT8 activations for INT8 and Q4K panels; Q4K also keeps each group's integer sum (the min term).
  const bool int8 = pe.dtype != Dtype::bf16, q4 = pe.dtype == Dtype::q4k;
  const bool h_int8 = pe.down_dtype != Dtype::bf16;  // else h is BF16 for BF16 down panels
  const bool h_q4 = pe.down_dtype == Dtype::q4k;
  // Activation quantization groups: x (and h for Q4K down panels) per q4_act_group under Q4K; each
  // group's scale is then written to all of its per-`group` slots (kernels.h, folded kernels).
  const int x_group = q4 ? pe.q4_act_group : pe.group, h_group = h_q4 ? pe.q4_act_group : pe.group;
  const int group = pe.group;
  const int min_tokens = a.min_tokens >= 0 ? a.min_tokens : default_min_tokens(pe.dtype);
  const bool amx_ok = available();
  if (a.n <= 0) return;
  if (a.top_k <= 0) {
    std::memset(a.y, 0, sizeof(float) * size_t(a.n * H));
    return;
  }

  // Bucket (token, slot) pairs by expert.
  const int64_t P = a.n * a.top_k;
  std::vector<int64_t> count(E + 1, 0), pair_start(E + 1, 0), row_start(E + 1, 0);
  for (int64_t i = 0; i < P; ++i) ++count[a.ids[i]];
  for (int64_t e = 0; e < E; ++e) {
    pair_start[e + 1] = pair_start[e] + count[e];
    row_start[e + 1] = row_start[e] + round_up(count[e], kRowAlign);
  }
  const int64_t rows_total = row_start[E];
  int64_t* pair_tok = s_tok.get<int64_t>(size_t(P));  // pair -> token
  float* pair_w = s_w.get<float>(size_t(P));          // pair -> routing weight
  int64_t* pos = s_pos.get<int64_t>(size_t(P));       // [n][top_k] -> pair
  {
    std::vector<int64_t> fill(pair_start.begin(), pair_start.end() - 1);
    for (int64_t i = 0; i < P; ++i) {
      const int64_t p = fill[a.ids[i]]++;
      pair_tok[p] = i / a.top_k;
      pair_w[p] = a.weights[i];
      pos[i] = p;
    }
  }

  const PackedMatrix& gu0 = pe.gate_up[0];
  const PackedMatrix& dn0 = pe.down[0];
  // Row strides: K padded by one cache line so the 16 rows of an A tile do not all fall into one
  // L1 set (a 4 KiB stride would, at hidden 2048 BF16).
  const int64_t k_in = gu0.k_pad, k_h = dn0.k_pad;
  const int64_t lda_in = k_in + (int8 ? 64 : 32), lda_h = k_h + (h_int8 ? 64 : 32);
  const int64_t ng_in = gu0.n_groups, ng_h = dn0.n_groups;
  uint8_t* act = s_act.get<uint8_t>(size_t(rows_total) * lda_in * (int8 ? 1 : 2));
  uint8_t* hbuf = s_h.get<uint8_t>(size_t(rows_total) * lda_h * (h_int8 ? 1 : 2));
  float* act_scale = int8 ? s_act_scale.get<float>(size_t(rows_total) * ng_in) : nullptr;
  float* h_scale = h_int8 ? s_h_scale.get<float>(size_t(rows_total) * ng_h) : nullptr;
  int32_t* act_sum = q4 ? s_act_sum.get<int32_t>(size_t(rows_total) * ng_in) : nullptr;
  int32_t* h_sum = h_q4 ? s_h_sum.get<int32_t>(size_t(rows_total) * ng_h) : nullptr;

  // Row -> expert map for the convert phase (rows in 16-row blocks; a block never spans experts).
  std::vector<int32_t> block_expert(size_t(rows_total / kRowAlign));
  for (int64_t e = 0; e < E; ++e)
    for (int64_t r = row_start[e]; r < row_start[e + 1]; r += kRowAlign) block_expert[r / kRowAlign] = int32_t(e);

  // Q4K panel p of w for a row block: the per-32 kernels, or the folded ones (q4_act_group > 32).
  auto run_q4 = [&](bool use_amx, const int8_t* A, int64_t lda, const float* as, const int32_t* sums, int mrows,
                    const PackedMatrix& w, int64_t p, float* C) {
    const uint8_t* panel = w.data + p * w.panel_bytes;
    const uint8_t* sm = w.q4_sm + p * w.n_groups * 64;
    const float* dd = w.q4_d + p * (w.k_pad / 256) * 64;
    if (pe.q4_act_group > 32) {
      (use_amx ? panel_q4k_folded_amx : panel_q4k_folded_avx512)(A, lda, as, sums, pe.q4_act_group, mrows, panel, sm,
                                                                 dd, w.n_groups, C);
    } else {
      (use_amx ? panel_q4k_amx : panel_q4k_avx512)(A, lda, as, sums, mrows, panel, sm, dd, w.n_groups, C);
    }
  };

  // 1. Convert.
  parallel_for(int64_t(block_expert.size()), [&](int64_t b, int) {
    const int64_t e = block_expert[b];
    for (int64_t r = b * kRowAlign; r < (b + 1) * kRowAlign; ++r) {
      const int64_t i = r - row_start[e];  // row within expert
      const bool real = i < count[e];
      static const float zero_row[1] = {0.0f};
      const float* x = real ? a.x + pair_tok[pair_start[e] + i] * H : zero_row;
      const int64_t k = real ? H : 0;
      if (int8) {
        quantize_row_int8(x, k, k_in, x_group, reinterpret_cast<int8_t*>(act) + r * lda_in, act_scale + r * ng_in);
        spread_scales(act_scale + r * ng_in, k_in / group, x_group / group);
        if (q4) group_sums_int8(reinterpret_cast<int8_t*>(act) + r * lda_in, k_in, group, act_sum + r * ng_in);
      } else {
        convert_row_bf16(x, k, k_in, reinterpret_cast<uint16_t*>(act) + r * lda_in);
      }
    }
  });

  stats.convert_s = since(t);

  // Task lists for phases 2 and 3: (expert, row chunk, column block).
  struct Task {
    int32_t e;
    int32_t m0;
    int32_t n0;
  };
  std::vector<Task> up_tasks, down_tasks;
  // h columns per gate+up task: whole h quantization groups.
  const int64_t up_block = int8 ? std::max(kUpBlockCols, h_group) : kUpBlockCols;
  for (int64_t e = 0; e < E; ++e) {
    if (count[e] == 0) continue;
    const int64_t m_pad = row_start[e + 1] - row_start[e];
    for (int64_t m0 = 0; m0 < m_pad; m0 += kChunkRows) {
      for (int64_t n0 = 0; n0 < k_h; n0 += up_block)
        up_tasks.push_back({int32_t(e), int32_t(m0), int32_t(n0)});
      for (int64_t n0 = 0; n0 < H; n0 += kDownBlockCols) down_tasks.push_back({int32_t(e), int32_t(m0), int32_t(n0)});
    }
  }
  for (int64_t e = 0; e < E; ++e) {
    if (count[e] == 0) continue;
    ++(amx_ok && count[e] >= min_tokens ? stats.experts_amx : stats.experts_avx512);
    stats.flops += 2.0 * double(count[e]) * 3.0 * double(H) * double(pe.ffn);
  }

  // 2. gate+up, SiLU(gate)·up, convert h.
  parallel_for(int64_t(up_tasks.size()), [&](int64_t ti, int) {
    const Task t = up_tasks[ti];
    const PackedMatrix& w = pe.gate_up[t.e];
    const int64_t r0 = row_start[t.e] + t.m0;
    const bool use_amx = amx_ok && count[t.e] >= min_tokens;
    const int mrows = chunk_rows(t.m0, row_start[t.e + 1] - row_start[t.e], count[t.e], use_amx);
    const int64_t ncols = std::min<int64_t>(up_block, k_h - t.n0);
    if (tls.h.size() < size_t(kChunkRows) * up_block) tls.h.resize(size_t(kChunkRows) * up_block);
    float* hf = tls.h.data();  // [mrows][ncols]
    float* C = tls.C();
    for (int64_t c0 = 0; c0 < ncols; c0 += 16) {
      const int64_t p = (t.n0 + c0) / 16;  // fused panel index = 16 h columns
      if (p >= w.n_panels) {
        for (int m = 0; m < mrows; ++m) std::memset(hf + m * ncols + c0, 0, 16 * sizeof(float));
        continue;
      }
      const uint8_t* panel = w.data + p * w.panel_bytes;
      if (q4) {
        const int8_t* A = reinterpret_cast<const int8_t*>(act) + r0 * lda_in;
        run_q4(use_amx, A, lda_in, act_scale + r0 * ng_in, act_sum + r0 * ng_in, mrows, w, p, C);
      } else if (int8) {
        const int8_t* A = reinterpret_cast<const int8_t*>(act) + r0 * lda_in;
        const float* as = act_scale + r0 * ng_in;
        const float* ws = w.scales + p * w.n_groups * kPanelCols;
        const int32_t* cs = w.colsum + p * w.n_groups * kPanelCols;
        (use_amx ? panel_int8_amx : panel_int8_avx512)(A, lda_in, as, mrows, panel, ws, cs, w.n_groups, group, C);
      } else {
        const uint16_t* A = reinterpret_cast<const uint16_t*>(act) + r0 * lda_in;
        (use_amx ? panel_bf16_amx : panel_bf16_avx512)(A, lda_in, mrows, panel, w.k_steps, C);
      }
      for (int m = 0; m < mrows; ++m) silu_mul16(C + m * kPanelCols, C + m * kPanelCols + 16, hf + m * ncols + c0);
    }
    for (int m = 0; m < mrows; ++m) {
      const int64_t r = r0 + m;
      if (h_int8) {
        int8_t* hq = reinterpret_cast<int8_t*>(hbuf) + r * lda_h + t.n0;
        quantize_row_int8(hf + m * ncols, ncols, ncols, h_group, hq, h_scale + r * ng_h + t.n0 / group);
        spread_scales(h_scale + r * ng_h + t.n0 / group, ncols / group, h_group / group);
        if (h_q4) group_sums_int8(hq, ncols, group, h_sum + r * ng_h + t.n0 / group);
      } else {
        convert_row_bf16(hf + m * ncols, ncols, ncols, reinterpret_cast<uint16_t*>(hbuf) + r * lda_h + t.n0);
      }
    }
  });

  stats.gate_up_s = since(t);

  // Runs down panel p of expert e for the row chunk at m0 into C; returns the real rows in it.
  auto down_panel = [&](int64_t e, int64_t m0, int64_t p, float* C) -> int64_t {
    const PackedMatrix& w = pe.down[e];
    const int64_t r0 = row_start[e] + m0;
    const bool use_amx = amx_ok && count[e] >= min_tokens;
    const int mrows = chunk_rows(m0, row_start[e + 1] - row_start[e], count[e], use_amx);
    const uint8_t* panel = w.data + p * w.panel_bytes;
    if (h_q4) {
      const int8_t* A = reinterpret_cast<const int8_t*>(hbuf) + r0 * lda_h;
      run_q4(use_amx, A, lda_h, h_scale + r0 * ng_h, h_sum + r0 * ng_h, mrows, w, p, C);
    } else if (h_int8) {
      const int8_t* A = reinterpret_cast<const int8_t*>(hbuf) + r0 * lda_h;
      const float* as = h_scale + r0 * ng_h;
      const float* ws = w.scales + p * w.n_groups * kPanelCols;
      const int32_t* cs = w.colsum + p * w.n_groups * kPanelCols;
      (use_amx ? panel_int8_amx : panel_int8_avx512)(A, lda_h, as, mrows, panel, ws, cs, w.n_groups, group, C);
    } else {
      const uint16_t* A = reinterpret_cast<const uint16_t*>(hbuf) + r0 * lda_h;
      (use_amx ? panel_bf16_amx : panel_bf16_avx512)(A, lda_h, mrows, panel, w.k_steps, C);
    }
    return std::min<int64_t>(mrows, count[e] - m0);
  };

  // 3. down, scaled by the routing weight, into Y_pairs.
  float* ypairs = s_y.get<float>(size_t(P) * H);
  parallel_for(int64_t(down_tasks.size()), [&](int64_t ti, int) {
    const Task t = down_tasks[ti];
    float* C = tls.C();
    for (int64_t c0 = t.n0; c0 < std::min<int64_t>(H, t.n0 + kDownBlockCols); c0 += kPanelCols) {
      const int64_t valid = down_panel(t.e, t.m0, c0 / kPanelCols, C);
      const int64_t nc = std::min<int64_t>(kPanelCols, H - c0);
      for (int64_t m = 0; m < valid; ++m) {
        const int64_t pr = pair_start[t.e] + t.m0 + m;
        const float rw = pair_w[pr];
        float* yo = ypairs + pr * H + c0;
        for (int64_t c = 0; c < nc; ++c) yo[c] = C[m * kPanelCols + c] * rw;
      }
    }
  });
  stats.down_s = since(t);

  // 4. Per-token sum over its top_k pairs.
  const int64_t tok_block = 16;
  parallel_for((a.n + tok_block - 1) / tok_block, [&](int64_t b, int) {
    for (int64_t tk = b * tok_block; tk < std::min(a.n, (b + 1) * tok_block); ++tk) {
      float* y = a.y + tk * H;
      const float* y0 = ypairs + pos[tk * a.top_k] * H;
      std::memcpy(y, y0, size_t(H) * sizeof(float));
      for (int j = 1; j < a.top_k; ++j) {
        const float* yj = ypairs + pos[tk * a.top_k + j] * H;
        for (int64_t c = 0; c < H; ++c) y[c] += yj[c];
      }
    }
  });
  stats.sum_s = since(t);
  stats.total_s = std::chrono::duration<double>(t - t_start).count();
}

}  // namespace mixtile::amx
