// Linear layer on the pool: activations converted once per call, then tasks over
// (row block x token block); each task calls the selected GEMM kernel on its tile.
#include "cpu/linear/linear.h"

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

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
constexpr int64_t TASKS_PER_THREAD = 4;

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

namespace {

// One weight row block of one layer: a task runs it for one token block.
struct RowBlock {
  int layer;
  int64_t r0, rows;
};

// Row blocks of every layer: each layer's rows cut into blocks of about `slice` bytes (multiples of
// 16 rows), the slice halved until there are TASKS_PER_THREAD blocks per thread or blocks are 16 rows.
// With one layer this is the rule linear_forward always had.
std::vector<RowBlock> row_blocks(const std::vector<const LinearWeight*>& ws, size_t slice) {
  const int64_t want = TASKS_PER_THREAD * pool_threads();
  std::vector<int64_t> rb(ws.size());
  for (size_t i = 0; i < ws.size(); ++i) rb[i] = std::max<int64_t>(16, int64_t(slice / ws[i]->w.row_bytes) / 16 * 16);
  for (;;) {
    int64_t blocks = 0;
    bool can_shrink = false;
    for (size_t i = 0; i < ws.size(); ++i) {
      blocks += (ws[i]->m + rb[i] - 1) / rb[i];
      can_shrink = can_shrink || rb[i] > 16;
    }
    if (blocks >= want || !can_shrink) break;
    for (auto& r : rb) r = std::max<int64_t>(16, r / 2);
  }
  std::vector<RowBlock> out;
  for (size_t i = 0; i < ws.size(); ++i) {
    for (int64_t r0 = 0; r0 < ws[i]->m; r0 += rb[i]) out.push_back({int(i), r0, std::min(rb[i], ws[i]->m - r0)});
  }
  return out;
}

}  // namespace

void linear_forward_multi(const LinearWeight* const* ws_in, int count, const float* x, int64_t n, float* const* ys_in) {
  if (n <= 0 || count <= 0) return;
  const int64_t k = ws_in[0]->k;
  std::vector<const LinearWeight*> ws;
  std::vector<float*> ys;
  for (int i = 0; i < count; ++i) {
    if (ws_in[i]->k != k) {
      throw std::invalid_argument("linear_forward_multi: layers differ in input features (" + std::to_string(k) +
                                  " vs " + std::to_string(ws_in[i]->k) + ")");
    }
    if (amx_linear_forward(ws_in[i]->amx.get(), x, n, ys_in[i])) continue;  // AMX hook
    ws.push_back(ws_in[i]);
    ys.push_back(ys_in[i]);
  }
  if (ws.empty()) return;

  // One activation buffer per distinct activation type (Q4_K, Q5_K and Q6_K all take Q8_K).
  std::vector<GgmlType> act_types;
  std::vector<int> act_of(ws.size());
  for (size_t i = 0; i < ws.size(); ++i) {
    const GgmlType at = act_type_for(ws[i]->w.type);
    auto it = std::find(act_types.begin(), act_types.end(), at);
    act_of[i] = int(it - act_types.begin());
    if (it == act_types.end()) act_types.push_back(at);
  }
  std::vector<GgmlType> conv_type(act_types.size());  // a weight type whose conversion gives that act type
  for (size_t i = 0; i < ws.size(); ++i) conv_type[size_t(act_of[i])] = ws[i]->w.type;
  std::vector<size_t> a_stride(act_types.size());
  std::vector<std::unique_ptr<Buffer>> bufs;
  std::vector<uint8_t*> acts;
  for (size_t j = 0; j < act_types.size(); ++j) {
    a_stride[j] = act_row_bytes(conv_type[j], k);
    bufs.push_back(std::make_unique<Buffer>(a_stride[j] * size_t(n)));
    acts.push_back(bufs.back()->data);
  }
  const int64_t n_conv = int64_t(act_types.size());
  auto convert = [&](int64_t task, int) {
    const int64_t j = task % n_conv, t = task / n_conv;
    convert_act_row(conv_type[size_t(j)], x + t * k, k, acts[size_t(j)] + size_t(t) * a_stride[size_t(j)]);
  };
  // One row converts in about a microsecond: inline, not a pool round trip (a barrier that an
  // oversubscribed box can stretch to milliseconds).
  if (n == 1) {
    for (int64_t j = 0; j < n_conv; ++j) convert(j, 0);
  } else {
    parallel_for(n * n_conv, convert);
  }

  const std::vector<RowBlock> blocks = row_blocks(ws, n == 1 ? LINEAR_DECODE_SLICE_BYTES : LINEAR_SLICE_BYTES);
  const int64_t n_blocks = int64_t(blocks.size());
  const int64_t tb = std::min(n, LINEAR_TOKEN_BLOCK);
  const int64_t n_tb = (n + tb - 1) / tb;
  std::vector<const GemmKernel*> kern(ws.size());
  for (size_t i = 0; i < ws.size(); ++i) {
    const Weight& w = ws[i]->w;
    GemmArgs probe{w.data, w.row_bytes, blocks[0].rows, acts[size_t(act_of[i])], a_stride[size_t(act_of[i])], tb, k, ys[i], ws[i]->m};
    for (const RowBlock& b : blocks) {
      if (b.layer == int(i)) {
        probe.n_rows = b.rows;
        break;
      }
    }
    kern[i] = gemm_select(w.type, probe);
  }
  parallel_for(n_blocks * n_tb, [&](int64_t task, int) {
    const RowBlock& b = blocks[size_t(task % n_blocks)];
    const int64_t t0 = (task / n_blocks) * tb;
    const LinearWeight& lw = *ws[size_t(b.layer)];
    const int j = act_of[size_t(b.layer)];
    GemmArgs g{lw.w.data + size_t(b.r0) * lw.w.row_bytes,
               lw.w.row_bytes,
               b.rows,
               acts[size_t(j)] + size_t(t0) * a_stride[size_t(j)],
               a_stride[size_t(j)],
               std::min(tb, n - t0),
               k,
               ys[size_t(b.layer)] + t0 * lw.m + b.r0,
               lw.m};
    kern[size_t(b.layer)]->fn(g);
  });
}

void linear_forward(const LinearWeight& lw, const float* x, int64_t n, float* y) {
  const LinearWeight* ws[1] = {&lw};
  float* ys[1] = {y};
  linear_forward_multi(ws, 1, x, n, ys);
}

}  // namespace mixtile
