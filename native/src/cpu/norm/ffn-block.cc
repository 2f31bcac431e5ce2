// FFN halves of decoder layers and the output head; see ffn-block.h.
#include "cpu/norm/ffn-block.h"

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "cpu/attention/attention-block.h"
#include "cpu/call-scratch.h"
#include "cpu/linear/linear-cost.h"
#include "cpu/norm/norm.h"
#include "cpu/norm/residual.h"
#include "cpu/profile/op-profile.h"

namespace mixtile {

static std::string layer_name(int layer, const char* part) {
  return "model.layers." + std::to_string(layer) + "." + part;
}

std::shared_ptr<FfnBlock> ffn_block_create_moe(int layer, float eps, const Weight& norm, const Weight& router,
                                               const Weight& gate_exps, const Weight& up_exps,
                                               const Weight& down_exps, int top_k, bool norm_topk_prob,
                                               const std::string& backend) {
  auto b = std::make_shared<FfnBlock>();
  b->layer = layer;
  b->hidden = norm.ne[0];
  b->eps = eps;
  b->norm = norm_weight_floats(norm, b->hidden, layer_name(layer, "post_attention_layernorm").c_str());
  try {
    b->experts = experts_load(gate_exps, up_exps, down_exps, router, backend);
  } catch (const std::exception& e) {
    throw std::invalid_argument(layer_name(layer, "mlp.experts") + ": " + e.what());
  }
  if (b->experts->hidden != b->hidden) {
    throw std::invalid_argument(layer_name(layer, "mlp.experts") + ": hidden size " +
                                std::to_string(b->experts->hidden) + " differs from the norm's " +
                                std::to_string(b->hidden));
  }
  if (top_k <= 0 || top_k > b->experts->n_expert) {
    throw std::invalid_argument(layer_name(layer, "mlp") + ": top_k " + std::to_string(top_k) + " not in [1, " +
                                std::to_string(b->experts->n_expert) + "]");
  }
  b->top_k = top_k;
  b->norm_topk_prob = norm_topk_prob;
  return b;
}

static std::shared_ptr<LinearWeight> checked_linear(const Weight& w, int64_t k, int64_t m, const std::string& what,
                                                    const std::string& backend = "auto") {
  if (w.ne[0] != k || (m > 0 && w.ne[1] != m) || w.ne[2] != 1) {
    throw std::invalid_argument(what + ": expected shape {" + std::to_string(k) + ", " + std::to_string(m) +
                                "} (ggml order), got {" + std::to_string(w.ne[0]) + ", " + std::to_string(w.ne[1]) +
                                ", " + std::to_string(w.ne[2]) + "}");
  }
  return linear_load(w, backend);
}

std::shared_ptr<FfnBlock> ffn_block_create_dense(int layer, float eps, const Weight& norm, const Weight& gate,
                                                 const Weight& up, const Weight& down) {
  auto b = std::make_shared<FfnBlock>();
  b->layer = layer;
  b->hidden = norm.ne[0];
  b->eps = eps;
  b->norm = norm_weight_floats(norm, b->hidden, layer_name(layer, "post_attention_layernorm").c_str());
  const int64_t ffn = gate.ne[1];
  b->gate = checked_linear(gate, b->hidden, ffn, layer_name(layer, "mlp.gate_proj"));
  b->up = checked_linear(up, b->hidden, ffn, layer_name(layer, "mlp.up_proj"));
  b->down = checked_linear(down, ffn, b->hidden, layer_name(layer, "mlp.down_proj"));
  return b;
}

// Weight bytes the routed experts read in one call: every distinct selected expert's three matrices.
static uint64_t experts_bytes(const ExpertsWeights& ew, const std::vector<int32_t>& ids) {
  std::vector<bool> seen(size_t(ew.n_expert), false);
  uint64_t n_active = 0;
  for (int32_t e : ids) {
    if (!seen[size_t(e)]) ++n_active;
    seen[size_t(e)] = true;
  }
  return n_active * (ew.gate.matrix_bytes() + ew.up.matrix_bytes() + ew.down.matrix_bytes());
}

void ffn_block_forward(const FfnBlock& b, float* x, int64_t n) {
  const int64_t hidden = b.hidden;
  // h and y [n, hidden] in scratch reused across calls.
  thread_local CallScratch scratch;
  float* h = scratch.floats(static_cast<size_t>(2 * n * hidden));
  float* y = h + n * hidden;
  if (b.experts) {
    const ExpertsWeights& ew = *b.experts;
    OpTimer t_route(Op::ffn_router);
    rms_norm(x, b.norm.data(), h, n, hidden, b.eps);
    std::vector<int32_t> ids(size_t(n * b.top_k));
    std::vector<float> w(size_t(n * b.top_k));
    moe_route(ew, h, n, b.top_k, b.norm_topk_prob, ids.data(), w.data());
    t_route.set(uint64_t(ew.router.size()) * 4, 2 * uint64_t(n) * uint64_t(ew.router.size()));
    t_route.stop();
    OpTimer t_exp(Op::ffn_experts);
    moe_forward_routed(ew, h, n, ids.data(), w.data(), b.top_k, y);
    residual_add(x, y, n, hidden);
    if (op_profile_enabled()) t_exp.set(experts_bytes(ew, ids), 6 * uint64_t(n * b.top_k) * uint64_t(ew.hidden * ew.ffn));
    return;
  }
  OpTimer t_dense(Op::ffn_dense);
  rms_norm(x, b.norm.data(), h, n, hidden, b.eps);
  {
    const int64_t ffn = b.gate->m;
    std::vector<float> g(static_cast<size_t>(n * ffn)), u(static_cast<size_t>(n * ffn));
    linear_forward(*b.gate, h, n, g.data());
    linear_forward(*b.up, h, n, u.data());
    for (int64_t i = 0; i < n * ffn; ++i) g[size_t(i)] = g[size_t(i)] / (1.0f + std::exp(-g[size_t(i)])) * u[size_t(i)];
    linear_forward(*b.down, g.data(), n, y);
    t_dense.set(linear_bytes(*b.gate) + linear_bytes(*b.up) + linear_bytes(*b.down),
                linear_flops(*b.gate, n) + linear_flops(*b.up, n) + linear_flops(*b.down, n));
  }
  residual_add(x, y, n, hidden);
}

std::shared_ptr<LmHead> lm_head_create(float eps, const Weight& norm, const Weight& out, const std::string& backend) {
  auto h = std::make_shared<LmHead>();
  h->hidden = norm.ne[0];
  h->eps = eps;
  h->norm = norm_weight_floats(norm, h->hidden, "model.norm");
  h->out = checked_linear(out, h->hidden, out.ne[1], "lm_head", backend);
  h->vocab = h->out->m;
  return h;
}

void lm_head_forward(const LmHead& h, const float* x, const int32_t* rows, int64_t n_rows, float* logits) {
  OpTimer t(Op::lm_head);
  t.set(linear_bytes(*h.out), linear_flops(*h.out, n_rows));
  std::vector<float> sel(static_cast<size_t>(n_rows * h.hidden));
  for (int64_t r = 0; r < n_rows; ++r) {
    std::memcpy(sel.data() + r * h.hidden, x + int64_t(rows[r]) * h.hidden, size_t(h.hidden) * 4);
  }
  rms_norm(sel.data(), h.norm.data(), sel.data(), n_rows, h.hidden, h.eps);
  linear_forward(*h.out, sel.data(), n_rows, logits);
}

}  // namespace mixtile
