// Linear layer on the pool: activations converted once per call, then tasks over
// (row block x token block); each task calls the selected GEMM kernel on its tile.
#include "cpu/linear/linear.h"

#include <algorithm>

#include "cpu/amx/amx-linear.h"
#include "cpu/linear/weight-prefault.h"
#include "threadpool.h"

namespace mixtile {

// A task's weight slice aims at ~192 KiB so it stays in a 1-2 MiB L2 alongside its activations.
constexpr size_t LINEAR_SLICE_BYTES = 192 * 1024;
// Tokens per task tile: large enough to reuse each weight block, small enough to load-balance.
constexpr int64_t LINEAR_TOKEN_BLOCK = 128;
// One token (decode) reads each weight byte once, so no L2 fit is needed: big slices keep each
// thread on one long DRAM stream (every task start restarts the hardware prefetcher). Quiet dev
// box, 4-layer Q4_K_M tg128, per token: lm_head 8.0-8.7 -> 7.7-7.8 ms with 4 MiB; 48 KiB slices
// made it 11.2 ms. Blocks still shrink below to give each thread 4+ tasks.
constexpr size_t LINEAR_DECODE_SLICE_BYTES = 4 * 1024 * 1024;

std::shared_ptr<LinearWeight> linear_load(const Weight& w, const std::string& backend) {
  if (!type_supported(w.type)) throw std::invalid_argument("linear: unsupported weight type");
  if (w.ne[2] != 1 || w.ne[3] != 1) throw std::invalid_argument("linear: weight must be 2-D");
  auto lw = std::make_shared<LinearWeight>();
  lw->w = w;
  lw->k = w.ne[0];
  lw->m = w.ne[1];
  weight_prefault(w);
  lw->amx = amx_linear_prepare(w, backend);  // AMX hook: panels for prefill-sized calls
  return lw;
}

const char* linear_amx_name(const LinearWeight& lw, int64_t n) {
  return lw.amx && amx_linear_takes(n) ? amx_linear_name(lw.amx.get()) : nullptr;
}

void linear_forward(const LinearWeight& lw, const float* x, int64_t n, float* y) {
  if (n <= 0) return;
  if (amx_linear_forward(lw.amx.get(), x, n, y)) return;  // AMX hook
  const Weight& w = lw.w;
  size_t a_stride = act_row_bytes(w.type, lw.k);
  Buffer acts(a_stride * size_t(n));
  // One row converts in about a microsecond: inline, not a pool round trip (a barrier that an
  // oversubscribed box can stretch to milliseconds).
  if (n == 1) convert_act_row(w.type, x, lw.k, acts.data);
  else parallel_for(n, [&](int64_t t, int) { convert_act_row(w.type, x + t * lw.k, lw.k, acts.data + size_t(t) * a_stride); });

  int64_t rb = int64_t((n == 1 ? LINEAR_DECODE_SLICE_BYTES : LINEAR_SLICE_BYTES) / w.row_bytes);
  rb = std::max<int64_t>(16, rb / 16 * 16);
  // With few rows per thread, shrink blocks so every thread gets work.
  int64_t threads = pool_threads();
  while (rb > 16 && (lw.m + rb - 1) / rb < 4 * threads) rb /= 2;
  int64_t n_rb = (lw.m + rb - 1) / rb;
  int64_t tb = std::min(n, LINEAR_TOKEN_BLOCK);
  int64_t n_tb = (n + tb - 1) / tb;

  GemmArgs probe{w.data, w.row_bytes, std::min(rb, lw.m), acts.data, a_stride, tb, lw.k, y, lw.m};
  const GemmKernel* kern = gemm_select(w.type, probe);
  parallel_for(n_rb * n_tb, [&](int64_t task, int) {
    int64_t r0 = (task % n_rb) * rb, t0 = (task / n_rb) * tb;
    GemmArgs g{w.data + size_t(r0) * w.row_bytes,
               w.row_bytes,
               std::min(rb, lw.m - r0),
               acts.data + size_t(t0) * a_stride,
               a_stride,
               std::min(tb, n - t0),
               lw.k,
               y + t0 * lw.m + r0,
               lw.m};
    kern->fn(g);
  });
}

}  // namespace mixtile
