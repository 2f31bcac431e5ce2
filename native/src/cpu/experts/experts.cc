// Experts: load-time checks, the router (softmax -> top-k -> renormalise), and the dispatch table.
#include "cpu/experts/experts.h"

#include <algorithm>
#include <cmath>
#include <mutex>

#include "cpu/dequant/dequant.h"
#include "cpu/linear/weight-prefault.h"
#include "cpu/matmul/matmul.h"
#include "threadpool.h"

namespace mixtile {
namespace {

bool generic_accepts(const ExpertsWeights&, const MoeArgs&) { return true; }

std::vector<ExpertsKernel>& registered() {
  static std::vector<ExpertsKernel> r;
  return r;
}

std::mutex& table_mutex() {
  static std::mutex m;
  return m;
}

std::string shape_str(const Weight& w) {
  return "[" + std::to_string(w.ne[0]) + ", " + std::to_string(w.ne[1]) + ", " + std::to_string(w.ne[2]) + ", " +
         std::to_string(w.ne[3]) + "] " + type_traits(w.type).name;
}

}  // namespace

void experts_register_kernel(const ExpertsKernel& k) {
  std::lock_guard<std::mutex> lk(table_mutex());
  registered().push_back(k);
}

// The table: registered entries (AMX, from native/src/cpu/amx/ via experts_register_kernel,
// highest ISA first) go in the AMX slot ahead of the built-in generic entry, which picks the
// best GEMM kernel per weight type (matmul.cc) and so covers scalar .. AVX-512 BF16.
const std::vector<ExpertsKernel>& experts_kernels() {
  static std::vector<ExpertsKernel> table;
  static size_t built_from = size_t(-1);
  std::lock_guard<std::mutex> lk(table_mutex());
  if (built_from != registered().size()) {
    table = registered();  // --- AMX slot: entries registered by native/src/cpu/amx/ ---
    std::stable_sort(table.begin(), table.end(),
                     [](const ExpertsKernel& a, const ExpertsKernel& b) { return int(a.isa) > int(b.isa); });
    table.push_back({Isa::scalar, "generic", generic_accepts, experts_forward_generic, nullptr});
    built_from = registered().size();
  }
  return table;
}

static const ExpertsKernel& select(const ExpertsWeights& ew, const MoeArgs& a) {
  const auto& table = experts_kernels();
  Isa active = active_isa();
  for (const auto& k : table) {
    if (int(k.isa) > int(active)) continue;
    if (k.prepare && !ew.prepared.count(k.name)) continue;
    if (k.accepts && !k.accepts(ew, a)) continue;
    return k;
  }
  return table.back();
}

const char* experts_select_name(const ExpertsWeights& ew, const MoeArgs& a) { return select(ew, a).name; }

std::shared_ptr<ExpertsWeights> experts_load(const Weight& gate, const Weight& up, const Weight& down,
                                             const Weight& router, const std::string& backend) {
  static const char* const known[] = {"auto", "AMXInt8", "AMXBF16", "AMXInt4", "AVX512", "llamafile", "generic"};
  if (std::find(std::begin(known), std::end(known), backend) == std::end(known)) {
    throw std::invalid_argument("experts: unknown backend \"" + backend +
                                "\" (known: auto, AMXInt8, AMXBF16, AMXInt4, AVX512, llamafile, generic)");
  }
  for (const Weight* w : {&gate, &up, &down}) {
    if (!type_supported(w->type)) throw std::invalid_argument("experts: unsupported weight type " + shape_str(*w));
  }
  int64_t hidden = gate.ne[0], ffn = gate.ne[1], n_expert = gate.ne[2];
  bool ok = gate.ne[3] == 1 && up.ne[0] == hidden && up.ne[1] == ffn && up.ne[2] == n_expert && up.ne[3] == 1 &&
            down.ne[0] == ffn && down.ne[1] == hidden && down.ne[2] == n_expert && down.ne[3] == 1;
  if (!ok) {
    throw std::invalid_argument("experts: expected gate/up [hidden, ffn, n_expert] and down [ffn, hidden, n_expert] "
                                "(ggml order), got gate " + shape_str(gate) + ", up " + shape_str(up) + ", down " +
                                shape_str(down));
  }
  if (!(router.type == GgmlType::F32 || router.type == GgmlType::F16 || router.type == GgmlType::BF16) ||
      router.ne[0] != hidden || router.ne[1] != n_expert || router.ne[2] != 1 || router.ne[3] != 1) {
    throw std::invalid_argument("experts: router must be F32/F16/BF16 [hidden, n_expert] = [" + std::to_string(hidden) +
                                ", " + std::to_string(n_expert) + "], got " + shape_str(router));
  }
  auto ew = std::make_shared<ExpertsWeights>();
  ew->gate = gate;
  ew->up = up;
  ew->down = down;
  ew->hidden = hidden;
  ew->ffn = ffn;
  ew->n_expert = n_expert;
  ew->backend = backend;
  for (const Weight* w : {&gate, &up, &down}) weight_prefault(*w);
  ew->router.resize(size_t(hidden * n_expert));
  for (int64_t e = 0; e < n_expert; ++e) {
    dequantize_row(router.type, router.data + size_t(e) * router.row_bytes, ew->router.data() + e * hidden, hidden);
  }
  Isa active = active_isa();
  for (const auto& k : experts_kernels()) {
    if (!k.prepare || int(k.isa) > int(active)) continue;
    if (auto p = k.prepare(*ew)) ew->prepared[k.name] = std::move(p);
  }
  return ew;
}

void moe_route(const ExpertsWeights& ew, const float* x, int64_t n, int top_k, bool norm_topk_prob, int32_t* ids,
               float* weights) {
  if (top_k < 1 || top_k > ew.n_expert) {
    throw std::invalid_argument("moe: top_k must be in [1, " + std::to_string(ew.n_expert) + "], got " +
                                std::to_string(top_k));
  }
  // Router logits [n, n_expert] with the F32 GEMM (identical router rows give identical logits,
  // so ties stay exact ties and go to the lower expert id below). Tasks over (expert rows x token
  // block): at one token the 1 MiB router (128 x 2048 F32) is split across the threads.
  std::vector<float> all_logits(size_t(n * ew.n_expert));
  const size_t xs = size_t(ew.hidden) * 4;
  constexpr int64_t ROUTE_TOKENS = 16;
  const int64_t n_tb = (n + ROUTE_TOKENS - 1) / ROUTE_TOKENS;
  int64_t rb = ew.n_expert;
  while (rb > 8 && n_tb * ((ew.n_expert + rb - 1) / rb) < 2 * pool_threads()) rb = (rb + 1) / 2;
  const int64_t n_rb = (ew.n_expert + rb - 1) / rb;
  GemmArgs probe{reinterpret_cast<const uint8_t*>(ew.router.data()), xs, rb, nullptr, xs, 1, ew.hidden, nullptr, ew.n_expert};
  const GemmKernel* kern = gemm_select(GgmlType::F32, probe);
  parallel_for(n_tb * n_rb, [&](int64_t task, int) {
    int64_t t0 = (task / n_rb) * ROUTE_TOKENS, r0 = (task % n_rb) * rb;
    GemmArgs g = probe;
    g.w = reinterpret_cast<const uint8_t*>(ew.router.data() + r0 * ew.hidden);
    g.n_rows = std::min(rb, ew.n_expert - r0);
    g.a = reinterpret_cast<const uint8_t*>(x + t0 * ew.hidden);
    g.n_tok = std::min(ROUTE_TOKENS, n - t0);
    g.y = all_logits.data() + t0 * ew.n_expert + r0;
    kern->fn(g);
  });
  // Softmax and top-k of one token take microseconds: a few tokens run on this thread.
  auto route_one = [&](int64_t t, int) {
    std::vector<float> logits(all_logits.begin() + t * ew.n_expert, all_logits.begin() + (t + 1) * ew.n_expert);
    float mx = *std::max_element(logits.begin(), logits.end());
    double z = 0;
    for (auto& l : logits) z += std::exp(double(l - mx));
    std::vector<int32_t> order(size_t(ew.n_expert));
    for (int32_t e = 0; e < int32_t(ew.n_expert); ++e) order[size_t(e)] = e;
    std::partial_sort(order.begin(), order.begin() + top_k, order.end(), [&](int32_t a, int32_t b) {
      return logits[size_t(a)] > logits[size_t(b)] || (logits[size_t(a)] == logits[size_t(b)] && a < b);
    });
    double sum = 0;
    for (int j = 0; j < top_k; ++j) {
      int32_t e = order[size_t(j)];
      double p = std::exp(double(logits[size_t(e)] - mx)) / z;
      ids[t * top_k + j] = e;
      weights[t * top_k + j] = float(p);
      sum += p;
    }
    if (norm_topk_prob && sum > 0) {
      for (int j = 0; j < top_k; ++j) weights[t * top_k + j] = float(weights[t * top_k + j] / sum);
    }
  };
  if (n <= 4) {
    for (int64_t t = 0; t < n; ++t) route_one(t, 0);
  } else {
    parallel_for(n, route_one);
  }
}

void moe_forward_routed(const ExpertsWeights& ew, const float* x, int64_t n, const int32_t* ids,
                        const float* weights, int top_k, float* y) {
  if (top_k < 1) throw std::invalid_argument("moe: top_k must be >= 1");
  for (int64_t i = 0; i < n * top_k; ++i) {
    if (ids[i] < 0 || ids[i] >= ew.n_expert) {
      throw std::invalid_argument("moe: expert id " + std::to_string(ids[i]) + " at token " + std::to_string(i / top_k) +
                                  " slot " + std::to_string(i % top_k) + " is outside [0, " +
                                  std::to_string(ew.n_expert) + ")");
    }
  }
  if (n <= 0) return;
  MoeArgs a{x, n, ids, weights, top_k, y};
  select(ew, a).forward(ew, a);
}

void moe_forward(const ExpertsWeights& ew, const float* x, int64_t n, int top_k, bool norm_topk_prob, float* y) {
  if (n <= 0) return;
  std::vector<int32_t> ids(size_t(n * top_k));
  std::vector<float> w(size_t(n * top_k));
  moe_route(ew, x, n, top_k, norm_topk_prob, ids.data(), w.data());
  moe_forward_routed(ew, x, n, ids.data(), w.data(), top_k, y);
}

}  // namespace mixtile
