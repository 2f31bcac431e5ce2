// The built-in experts path: group tokens by expert, then tasks over (expert, row block) pairs so
// 8 active experts x few tokens still fill every thread and each task's weight slice stays in L2:
//   gate/up: h[e] = SiLU(x[e] W_gate[e]^T) * (x[e] W_up[e]^T)     [n_e, ffn]
//   down:    o[e] = h[e] W_down[e]^T                               [n_e, hidden]
// then y[t] = sum_j weight[t, j] * o[ids[t, j]][pos]  in slot order (deterministic).
// Small calls (decode) run all of it as one pool job (see run_fused); large ones as pool phases
// with the conversions and the sum between them.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <thread>

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

// One per cache line: each expert's and row block's counter is hit by the threads finishing its
// blocks, and must not bounce the line of the others'.
struct alignas(64) Counter {
  std::atomic<int64_t> v;
};

// Scratch of the calling thread, kept between calls: fresh multi-MiB allocations each call cost
// page faults and zeroing (tens of ms at 512 tokens). Sized up only; never shared across threads.
struct Scratch {
  std::vector<uint8_t> xg, xu, hd;
  std::vector<float> g, u, o;
  // Grouping and kernel choice (small, but one allocation each per call otherwise).
  std::vector<int64_t> count, start, fill, active, tok_of, pos_of;
  std::vector<const GemmKernel*> kg, ku, kd;
  // The fused job's completion counters (see run_fused).
  std::unique_ptr<Counter[]> left;
  size_t n_left = 0;
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

// What both schedules share: the grouped rows, their activations, the kernels and outputs.
struct Plan {
  int64_t H, F, K, n, n_active;
  bool one_token;  // every expert reads its activations from row 0 on (all pairs are one token)
  const int64_t *count, *start, *active, *pos_of;
  const uint8_t *xg, *xu;
  size_t gs, xu_stride, ds;
  uint8_t* hd;
  float *g, *u, *o;
  int64_t ldh, ldo, rb1, nrb1, rb2, nrb2;
  const GemmKernel *const *kg, *const *ku, *const *kd;
};

// Gate and up for row block `b` of active expert `i`, then SiLU(g) * u in g.
void gate_up_block(const ExpertsWeights& ew, const Plan& P, int64_t i, int64_t b) {
  int64_t e = P.active[i], r0 = b * P.rb1, nr = std::min(P.rb1, P.F - r0);
  int64_t p0 = P.start[e], ne = P.count[e];
  const size_t xr = P.one_token ? 0 : size_t(p0);
  GemmArgs ag{ew.gate.data + ew.gate.matrix_bytes() * size_t(e) + ew.gate.row_bytes * size_t(r0),
              ew.gate.row_bytes, nr, P.xg + P.gs * xr, P.gs, ne, P.H, P.g + p0 * P.ldh + r0, P.ldh};
  P.kg[i]->fn(ag);
  GemmArgs au{ew.up.data + ew.up.matrix_bytes() * size_t(e) + ew.up.row_bytes * size_t(r0),
              ew.up.row_bytes, nr, P.xu + P.xu_stride * xr, P.xu_stride, ne, P.H, P.u + p0 * P.ldh + r0, P.ldh};
  P.ku[i]->fn(au);
  for (int64_t p = 0; p < ne; ++p) silu_mul(P.g + (p0 + p) * P.ldh + r0, P.u + (p0 + p) * P.ldh + r0, nr);
}

// Down rows of row block `b` of active expert `i` (its h rows already converted into hd).
void down_block(const ExpertsWeights& ew, const Plan& P, int64_t i, int64_t b) {
  int64_t e = P.active[i], r0 = b * P.rb2, nr = std::min(P.rb2, P.H - r0);
  int64_t p0 = P.start[e], ne = P.count[e];
  GemmArgs ad{ew.down.data + ew.down.matrix_bytes() * size_t(e) + ew.down.row_bytes * size_t(r0),
              ew.down.row_bytes, nr, P.hd + P.ds * size_t(p0), P.ds, ne, P.F, P.o + p0 * P.ldo + r0, P.ldo};
  P.kd[i]->fn(ad);
}

// y[t][c0, c1) = sum_j weight[t, j] * o[pos_of[t, j]][c0, c1), slot order: the same float steps per
// element whichever column range a call covers.
void weighted_sum(const Plan& P, const MoeArgs& a, int64_t t, int64_t c0, int64_t c1) {
  float* yt = a.y + t * P.H;
  std::fill(yt + c0, yt + c1, 0.f);
  for (int64_t j = 0; j < P.K; ++j) {
    float wgt = a.weights[t * P.K + j];
    const float* ot = P.o + P.pos_of[t * P.K + j] * P.ldo;
    for (int64_t c = c0; c < c1; ++c) yt[c] += wgt * ot[c];
  }
}

// Spins until `flag` is set; past a short spin it yields, so an oversubscribed box can run the
// thread that will set it.
void wait_set(const Counter& flag) {
  for (int spins = 0; flag.v.load(std::memory_order_acquire) == 0; ++spins) {
    if (spins < 200) _mm_pause();
    else std::this_thread::yield();
  }
}

// Small calls: one pool job instead of two, and no serial pass between or after them. Tasks are
// all gate/up blocks, then all down blocks (the pool hands indices out in order). The thread that
// finishes an expert's last gate/up block converts that expert's h rows and marks it ready; a down
// block waits only for its own expert (every gate/up block is claimed before any down block, by a
// thread that is running it, so the wait ends). The thread that finishes a row block's last down
// block (over all experts) writes that block of y. Same kernels, blocks and sum order as the
// phased schedule, so the same bits. left: [n_active] gate/up blocks left, [n_active] ready flags,
// [nrb2] down blocks left.
void run_fused(const ExpertsWeights& ew, const Plan& P, const MoeArgs& a, Counter* left) {
  Counter *gu_left = left, *ready = left + P.n_active, *down_left = left + 2 * P.n_active;
  for (int64_t i = 0; i < P.n_active; ++i) {
    gu_left[i].v.store(P.nrb1, std::memory_order_relaxed);
    ready[i].v.store(0, std::memory_order_relaxed);
  }
  for (int64_t b = 0; b < P.nrb2; ++b) down_left[b].v.store(P.n_active, std::memory_order_relaxed);
  const int64_t n_gu = P.n_active * P.nrb1;
  parallel_for(n_gu + P.n_active * P.nrb2, [&](int64_t task, int) {
    if (task < n_gu) {
      const int64_t i = task / P.nrb1;
      // Counted down even if the kernel throws, so no down block waits forever (the pool rethrows).
      struct Done {
        const ExpertsWeights& ew;
        const Plan& P;
        Counter *gu_left, *ready;
        int64_t i;
        ~Done() {
          if (gu_left[i].v.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
          const int64_t p0 = P.start[P.active[i]];
          for (int64_t p = p0; p < p0 + P.count[P.active[i]]; ++p) {
            convert_act_row(ew.down.type, P.g + p * P.ldh, P.F, P.hd + size_t(p) * P.ds);
          }
          ready[i].v.store(1, std::memory_order_release);
        }
      } done{ew, P, gu_left, ready, i};
      gate_up_block(ew, P, i, task % P.nrb1);
      return;
    }
    const int64_t i = (task - n_gu) / P.nrb2, b = (task - n_gu) % P.nrb2;
    wait_set(ready[i]);
    down_block(ew, P, i, b);
    if (down_left[b].v.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    const int64_t c0 = b * P.rb2, c1 = std::min(P.H, c0 + P.rb2);
    for (int64_t t = 0; t < a.n; ++t) weighted_sum(P, a, t, c0, c1);
  });
}

// Large calls: gate/up for all experts, h conversion, down for all experts, the weighted sum.
void run_phased(const ExpertsWeights& ew, const Plan& P, const MoeArgs& a, int64_t total) {
  {
    OpTimer t_gu(Op::experts_gate_up);
    t_gu.set(uint64_t(P.n_active) * (ew.gate.matrix_bytes() + ew.up.matrix_bytes()), 4 * uint64_t(total * P.F * P.H));
    parallel_for(P.n_active * P.nrb1, [&](int64_t task, int) { gate_up_block(ew, P, task / P.nrb1, task % P.nrb1); });
  }
  {
    OpTimer t_other(Op::experts_other);
    rows_for(total, P.F, [&](int64_t p, int) { convert_act_row(ew.down.type, P.g + p * P.ldh, P.F, P.hd + size_t(p) * P.ds); });
  }
  {
    OpTimer t_down(Op::experts_down);
    t_down.set(uint64_t(P.n_active) * ew.down.matrix_bytes(), 2 * uint64_t(total * P.F * P.H));
    parallel_for(P.n_active * P.nrb2, [&](int64_t task, int) { down_block(ew, P, task / P.nrb2, task % P.nrb2); });
  }
  OpTimer t_other(Op::experts_other);
  rows_for(a.n, P.K * P.H, [&](int64_t t, int) { weighted_sum(P, a, t, 0, P.H); });
}

}  // namespace

void experts_forward_generic(const ExpertsWeights& ew, const MoeArgs& a) {
  const int64_t H = ew.hidden, F = ew.ffn, K = a.top_k;
  Scratch& sc = scratch();
  std::optional<OpTimer> t_other(std::in_place, Op::experts_other);
  // Group (token, slot) pairs by expert; pos_of[t*K + j] = row of that pair inside its expert.
  std::vector<int64_t>& count = sc.count;
  count.assign(size_t(ew.n_expert), 0);
  for (int64_t i = 0; i < a.n * K; ++i) ++count[size_t(a.ids[i])];
  std::vector<int64_t>&active = sc.active, &start = sc.start;
  active.clear();
  start.resize(size_t(ew.n_expert));
  int64_t total = 0;
  for (int64_t e = 0; e < ew.n_expert; ++e) {
    start[size_t(e)] = total;
    total += count[size_t(e)];
    if (count[size_t(e)] > 0) active.push_back(e);
  }
  std::vector<int64_t>&tok_of = sc.tok_of, &pos_of = sc.pos_of, &fill = sc.fill;
  tok_of.resize(static_cast<size_t>(total));
  pos_of.resize(static_cast<size_t>(a.n * K));
  fill = start;
  for (int64_t i = 0; i < a.n * K; ++i) {
    int64_t e = a.ids[i], p = fill[size_t(e)]++;
    tok_of[size_t(p)] = i / K;
    pos_of[size_t(i)] = p;
  }
  const int64_t n_active = int64_t(active.size());

  // Activations of gate/up for each grouped row (row p = pair p), converted once.
  const size_t gs = act_row_stride(ew.gate.type, H), us = act_row_stride(ew.up.type, H);
  const bool same_gu = act_type_for(ew.gate.type) == act_type_for(ew.up.type);
  uint8_t* xg = grow(sc.xg, gs * size_t(total));
  uint8_t* xu = same_gu ? xg : grow(sc.xu, us * size_t(total));
  auto convert_pair = [&](int64_t p, int) {
    const float* xt = a.x + tok_of[size_t(p)] * H;
    convert_act_row(ew.gate.type, xt, H, xg + size_t(p) * gs);
    if (!same_gu) convert_act_row(ew.up.type, xt, H, xu + size_t(p) * us);
  };
  const bool one_token = a.n == 1;
  if (one_token) {
    // One row converted, which every expert reads; rows 1 .. (most pairs of one expert) - 1 are
    // copies, for an expert that a token's top_k lists more than once.
    convert_pair(0, 0);
    int64_t most = 0;
    for (int64_t e : active) most = std::max(most, count[size_t(e)]);
    for (int64_t p = 1; p < most; ++p) {
      std::memcpy(xg + size_t(p) * gs, xg, act_row_bytes(ew.gate.type, H));
      if (!same_gu) std::memcpy(xu + size_t(p) * us, xu, act_row_bytes(ew.up.type, H));
    }
  } else if (total * H <= SERIAL_ELEMENTS) {
    // Few pairs, on this thread; a pair whose token the previous pair already converted copies
    // those bytes (an expert that several tokens picked lists them in token order).
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

  Plan P{};
  P.H = H, P.F = F, P.K = K, P.n = a.n, P.n_active = n_active, P.one_token = one_token;
  P.count = count.data(), P.start = start.data(), P.active = active.data(), P.pos_of = pos_of.data();
  P.xg = xg, P.xu = xu, P.gs = gs, P.xu_stride = same_gu ? gs : us;
  P.ds = act_row_stride(ew.down.type, F);
  P.hd = grow(sc.hd, P.ds * size_t(total));
  P.ldh = out_row_stride(F), P.ldo = out_row_stride(H);
  P.g = grow(sc.g, size_t(total * P.ldh));
  P.u = grow(sc.u, size_t(total * P.ldh));
  P.o = grow(sc.o, size_t(total * P.ldo));
  P.rb1 = row_block(ew.gate.row_bytes + ew.up.row_bytes, F, n_active);
  P.nrb1 = (F + P.rb1 - 1) / P.rb1;
  P.rb2 = row_block(ew.down.row_bytes, H, n_active);
  P.nrb2 = (H + P.rb2 - 1) / P.rb2;
  // Kernels are chosen per expert: its token count decides (e.g. token-lane kernels need 16+).
  sc.kg.resize(size_t(n_active)), sc.ku.resize(size_t(n_active)), sc.kd.resize(size_t(n_active));
  for (int64_t i = 0; i < n_active; ++i) {
    int64_t ne = count[size_t(active[size_t(i)])];
    sc.kg[size_t(i)] = gemm_select(ew.gate.type, GemmArgs{ew.gate.data, ew.gate.row_bytes, P.rb1, xg, gs, ne, H, nullptr, F});
    sc.ku[size_t(i)] = gemm_select(ew.up.type, GemmArgs{ew.up.data, ew.up.row_bytes, P.rb1, xu, P.xu_stride, ne, H, nullptr, F});
    sc.kd[size_t(i)] = gemm_select(ew.down.type, GemmArgs{ew.down.data, ew.down.row_bytes, P.rb1, nullptr, 0, ne, F, nullptr, H});
  }
  P.kg = sc.kg.data(), P.ku = sc.ku.data(), P.kd = sc.kd.data();
  t_other.reset();

  // Fused where the phased schedule would convert h and sum y on the calling thread anyway.
  if (total * F <= SERIAL_ELEMENTS && a.n * K * H <= SERIAL_ELEMENTS) {
    const size_t n_left = size_t(2 * n_active + P.nrb2);
    if (sc.n_left < n_left) sc.left.reset(new Counter[n_left]), sc.n_left = n_left;
    OpTimer t_all(Op::experts_fused);
    t_all.set(uint64_t(n_active) * (ew.gate.matrix_bytes() + ew.up.matrix_bytes() + ew.down.matrix_bytes()),
              6 * uint64_t(total * F * H));
    run_fused(ew, P, a, sc.left.get());
  } else {
    run_phased(ew, P, a, total);
  }
}

}  // namespace mixtile
