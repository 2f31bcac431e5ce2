// The built-in experts path: group tokens by expert, then two pool phases with tasks over
// (expert, row block) pairs so 8 active experts x few tokens still fill every thread and each
// task's weight slice stays in L2:
//   phase 1: h[e] = SiLU(x[e] W_gate[e]^T) * (x[e] W_up[e]^T)     [n_e, ffn]
//   phase 2: o[e] = h[e] W_down[e]^T                               [n_e, hidden]
// then y[t] = sum_j weight[t, j] * o[ids[t, j]][pos]  in slot order (deterministic).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>

#include "cpu/experts/experts.h"
#include "cpu/matmul/matmul.h"
#include "cpu/profile/op-profile.h"
#include "threadpool.h"

namespace mixtile {
namespace {

// Weight slice per task (gate+up rows together, or down rows). The token-lane kernels pass over a
// slice once per 32 tokens, so it need not stay in L2, and bigger slices rebuild each task's
// activation tiles less often. bench-op --op experts --type q4_k --tokens 512 --threads 1,
// GFLOP/s per core: 128 KiB 106-140, 384 KiB 145-164, 1 MiB 113-155 (noisy shared box).
constexpr size_t EXPERT_SLICE_BYTES = 512 * 1024;

// Scratch of the calling thread, kept between calls: fresh multi-MiB allocations each call cost
// page faults and zeroing (tens of ms at 512 tokens). Sized up only; never shared across threads.
struct Scratch {
  std::vector<uint8_t> xg, xu, hd;
  std::vector<float> g, u, o;
};
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

template <class T>
T* grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// Per-row work (activation conversion, the weighted sum) below this many elements in all runs on
// the calling thread: at one token (8 rows of 2048) it takes microseconds, less than a pool round
// trip, whose barrier an oversubscribed box can stretch to milliseconds.
constexpr int64_t SERIAL_ELEMENTS = 32768;

void rows_for(int64_t rows, int64_t elements_per_row, const std::function<void(int64_t, int)>& fn) {
  if (rows * elements_per_row <= SERIAL_ELEMENTS) {
    for (int64_t r = 0; r < rows; ++r) fn(r, 0);
  } else {
    parallel_for(rows, fn);
  }
}

int64_t row_block(size_t row_bytes, int64_t rows, int64_t n_active) {
  int64_t rb = std::max<int64_t>(8, int64_t(EXPERT_SLICE_BYTES / row_bytes) / 8 * 8);
  // Enough tasks for load balance: at least ~4 per thread overall. At one token on the test machine
  // 8 per thread measured the same, and equal chunks of all experts' rows end to end (1 or 2 per
  // thread) 0-7% slower (bench/RESULTS.md "One-token experts at 16 threads").
  int64_t want = 4 * pool_threads();
  while (rb > 8 && n_active * ((rows + rb - 1) / rb) < want) rb /= 2;
  return std::min(rb, rows);
}

// Row stride (floats) of the kernels' F32 outputs g, u and o: n, plus one cache line where the row is
// a multiple of 512 bytes. The kernels store each token's outputs of a row tile a row apart, and
// o's 8 KiB rows (hidden 2048) put all 32 tokens of an expert in the same L1 sets, evicting each
// other between row tiles.
int64_t out_row_stride(int64_t n) { return (n * 4) % 512 == 0 ? n + 16 : n; }

}  // namespace

void experts_forward_generic(const ExpertsWeights& ew, const MoeArgs& a) {
  const int64_t H = ew.hidden, F = ew.ffn, K = a.top_k;
  auto t_other = std::make_unique<OpTimer>(Op::experts_other);
  // Group (token, slot) pairs by expert; pos_of[t*K + j] = row of that pair inside its expert.
  std::vector<int64_t> count(size_t(ew.n_expert), 0);
  for (int64_t i = 0; i < a.n * K; ++i) ++count[size_t(a.ids[i])];
  std::vector<int64_t> active, start(size_t(ew.n_expert), 0);
  int64_t total = 0;
  for (int64_t e = 0; e < ew.n_expert; ++e) {
    start[size_t(e)] = total;
    total += count[size_t(e)];
    if (count[size_t(e)] > 0) active.push_back(e);
  }
  std::vector<int64_t> tok_of(static_cast<size_t>(total));
  std::vector<int64_t> pos_of(static_cast<size_t>(a.n * K));
  std::vector<int64_t> fill = start;
  for (int64_t i = 0; i < a.n * K; ++i) {
    int64_t e = a.ids[i], p = fill[size_t(e)]++;
    tok_of[size_t(p)] = i / K;
    pos_of[size_t(i)] = p;
  }
  const int64_t n_active = int64_t(active.size());

  // Activations of gate/up for each grouped row (row p = pair p), converted once.
  const size_t gs = act_row_stride(ew.gate.type, H), us = act_row_stride(ew.up.type, H);
  const bool same_gu = act_type_for(ew.gate.type) == act_type_for(ew.up.type);
  Scratch& sc = scratch();
  uint8_t* xg = grow(sc.xg, gs * size_t(total));
  uint8_t* xu = same_gu ? xg : grow(sc.xu, us * size_t(total));
  auto convert_pair = [&](int64_t p, int) {
    const float* xt = a.x + tok_of[size_t(p)] * H;
    convert_act_row(ew.gate.type, xt, H, xg + size_t(p) * gs);
    if (!same_gu) convert_act_row(ew.up.type, xt, H, xu + size_t(p) * us);
  };
  if (total * H <= SERIAL_ELEMENTS) {
    // Few pairs, on this thread; a pair whose token the previous pair already converted copies
    // those bytes (at one token all top_k pairs are the same token).
    for (int64_t p = 0; p < total; ++p) {
      if (p > 0 && tok_of[size_t(p)] == tok_of[size_t(p - 1)]) {
        std::memcpy(xg + size_t(p) * gs, xg + size_t(p - 1) * gs, act_row_bytes(ew.gate.type, H));
        if (!same_gu) std::memcpy(xu + size_t(p) * us, xu + size_t(p - 1) * us, act_row_bytes(ew.up.type, H));
      } else {
        convert_pair(p, 0);
      }
    }
  } else {
    parallel_for(total, convert_pair);
  }
  const uint8_t* xu_data = xu;
  const size_t xu_stride = same_gu ? gs : us;

  t_other.reset();
  // Phase 1: gate and up for one row block of one expert, then SiLU(g) * u into h.
  OpTimer t_gu(Op::experts_gate_up);
  t_gu.set(uint64_t(n_active) * (ew.gate.matrix_bytes() + ew.up.matrix_bytes()), 4 * uint64_t(total * F * H));
  const int64_t ldh = out_row_stride(F), ldo = out_row_stride(H);
  float* g = grow(sc.g, size_t(total * ldh));
  float* u = grow(sc.u, size_t(total * ldh));
  const int64_t rb1 = row_block(ew.gate.row_bytes + ew.up.row_bytes, F, n_active);
  const int64_t nrb1 = (F + rb1 - 1) / rb1;
  // Kernels are chosen per expert: its token count decides (e.g. token-lane kernels need 16+).
  const size_t n_act = static_cast<size_t>(n_active);
  std::vector<const GemmKernel*> kg(n_act), ku(n_act), kd(n_act);
  for (int64_t i = 0; i < n_active; ++i) {
    int64_t ne = count[size_t(active[size_t(i)])];
    kg[size_t(i)] = gemm_select(ew.gate.type, GemmArgs{ew.gate.data, ew.gate.row_bytes, rb1, xg, gs, ne, H, nullptr, F});
    ku[size_t(i)] = gemm_select(ew.up.type, GemmArgs{ew.up.data, ew.up.row_bytes, rb1, xu_data, xu_stride, ne, H, nullptr, F});
    kd[size_t(i)] = gemm_select(ew.down.type, GemmArgs{ew.down.data, ew.down.row_bytes, rb1, nullptr, 0, ne, F, nullptr, H});
  }
  parallel_for(n_active * nrb1, [&](int64_t task, int) {
    int64_t e = active[size_t(task / nrb1)], r0 = (task % nrb1) * rb1, nr = std::min(rb1, F - r0);
    int64_t p0 = start[size_t(e)], ne = count[size_t(e)];
    GemmArgs ag{ew.gate.data + ew.gate.matrix_bytes() * size_t(e) + ew.gate.row_bytes * size_t(r0),
                ew.gate.row_bytes, nr, xg + gs * size_t(p0), gs, ne, H, g + p0 * ldh + r0, ldh};
    kg[size_t(task / nrb1)]->fn(ag);
    GemmArgs au{ew.up.data + ew.up.matrix_bytes() * size_t(e) + ew.up.row_bytes * size_t(r0),
                ew.up.row_bytes, nr, xu_data + xu_stride * size_t(p0), xu_stride, ne, H, u + p0 * ldh + r0, ldh};
    ku[size_t(task / nrb1)]->fn(au);
    for (int64_t p = 0; p < ne; ++p) silu_mul(g + (p0 + p) * ldh + r0, u + (p0 + p) * ldh + r0, nr);
  });

  t_gu.stop();

  // Phase 2: h -> down activations, then down rows per (expert, row block).
  t_other = std::make_unique<OpTimer>(Op::experts_other);
  const size_t ds = act_row_stride(ew.down.type, F);
  uint8_t* hd = grow(sc.hd, ds * size_t(total));
  rows_for(total, F, [&](int64_t p, int) { convert_act_row(ew.down.type, g + p * ldh, F, hd + size_t(p) * ds); });
  float* o = grow(sc.o, size_t(total * ldo));
  t_other.reset();
  OpTimer t_down(Op::experts_down);
  t_down.set(uint64_t(n_active) * ew.down.matrix_bytes(), 2 * uint64_t(total * F * H));
  const int64_t rb2 = row_block(ew.down.row_bytes, H, n_active);
  const int64_t nrb2 = (H + rb2 - 1) / rb2;
  parallel_for(n_active * nrb2, [&](int64_t task, int) {
    int64_t e = active[size_t(task / nrb2)], r0 = (task % nrb2) * rb2, nr = std::min(rb2, H - r0);
    int64_t p0 = start[size_t(e)], ne = count[size_t(e)];
    GemmArgs ad{ew.down.data + ew.down.matrix_bytes() * size_t(e) + ew.down.row_bytes * size_t(r0),
                ew.down.row_bytes, nr, hd + ds * size_t(p0), ds, ne, F, o + p0 * ldo + r0, ldo};
    kd[size_t(task / nrb2)]->fn(ad);
  });

  t_down.stop();

  // Weighted sum back in token order.
  t_other = std::make_unique<OpTimer>(Op::experts_other);
  rows_for(a.n, K * H, [&](int64_t t, int) {
    float* yt = a.y + t * H;
    std::fill(yt, yt + H, 0.f);
    for (int64_t j = 0; j < K; ++j) {
      float wgt = a.weights[t * K + j];
      const float* ot = o + pos_of[size_t(t * K + j)] * ldo;
      for (int64_t i = 0; i < H; ++i) yt[i] += wgt * ot[i];
    }
  });
}

}  // namespace mixtile
