// GPU attention block; see attention.h.
#include "gpu/attention.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "gpu/decode-profile.h"
#include "gpu/weights-upload.h"

namespace mixtile::gpu {

static void expect_shape(const Weight& w, int64_t ne0, int64_t ne1, int layer, const char* what) {
  if (w.ne[0] != ne0 || w.ne[1] != ne1 || w.ne[2] != 1 || w.ne[3] != 1) {
    throw std::invalid_argument("model.layers." + std::to_string(layer) + "." + what + ": expected shape {" +
                                std::to_string(ne0) + ", " + std::to_string(ne1) + "} (ggml order), got {" +
                                std::to_string(w.ne[0]) + ", " + std::to_string(w.ne[1]) + ", " +
                                std::to_string(w.ne[2]) + "}");
  }
}

std::shared_ptr<GpuAttention> gpu_attention_create(std::shared_ptr<GpuContext> ctx, int layer, float eps,
                                                   double rope_theta, const Weight& norm, const Weight* q_norm,
                                                   const Weight* k_norm, const Weight& wq, const Weight& wk,
                                                   const Weight& wv, const Weight& wo) {
  const GpuDims& d = ctx->dims;
  if (layer < 0 || size_t(layer) >= ctx->kv.layers.size() || !ctx->kv.layers[size_t(layer)].k) {
    throw std::invalid_argument("model.layers." + std::to_string(layer) +
                                ".self_attn: the GPU context has no KV cache for this layer");
  }
  if (d.head_dim != 64 && d.head_dim != 128) {
    throw std::invalid_argument("model.layers." + std::to_string(layer) + ".self_attn: head dim " +
                                std::to_string(d.head_dim) + " is not supported by the GPU attention (64 or 128)");
  }
  expect_shape(norm, d.hidden, 1, layer, "input_layernorm");
  expect_shape(wq, d.hidden, d.q_dim(), layer, "self_attn.q_proj");
  expect_shape(wk, d.hidden, d.kv_dim(), layer, "self_attn.k_proj");
  expect_shape(wv, d.hidden, d.kv_dim(), layer, "self_attn.v_proj");
  expect_shape(wo, d.q_dim(), d.hidden, layer, "self_attn.o_proj");
  if (q_norm) expect_shape(*q_norm, d.head_dim, 1, layer, "self_attn.q_norm");
  if (k_norm) expect_shape(*k_norm, d.head_dim, 1, layer, "self_attn.k_norm");
  auto a = std::make_shared<GpuAttention>();
  a->ctx = ctx;
  a->layer = layer;
  a->eps = eps;
  a->theta = float(rope_theta);
  a->norm = upload_f32(*ctx, norm, "input_layernorm");
  if (q_norm) a->q_norm = upload_f32(*ctx, *q_norm, "self_attn.q_norm");
  if (k_norm) a->k_norm = upload_f32(*ctx, *k_norm, "self_attn.k_norm");
  a->wqkv = gpu_linear_upload(*ctx, {&wq, &wk, &wv}, "self_attn q/k/v");
  a->wo = gpu_linear_upload(*ctx, {&wo}, "self_attn.o_proj");
  a->graphs = std::make_unique<GraphCache>(ctx->api);
  return a;
}

// Queues the block for plan p. decode_max_len > 0 replaces each decode group's max_len (a graph is
// captured for a bound on the lengths, not the lengths themselves).
static void issue(GpuAttention& a, const BatchPlan& p, int64_t decode_max_len) {
  GpuContext& g = *a.ctx;
  const CudaApi& api = *g.api;
  const GpuDims& d = g.dims;
  const int64_t n = p.n, hd = d.hidden, qd = d.q_dim(), kvd = d.kv_dim();
  mxc_stream* s = g.stream;
  auto* xb = g.xb.as<uint16_t>();
  g.ok(api.mxc_rmsnorm(g.x.as<float>(), a.norm.as<float>(), xb, MXC_BF16, n, int(hd), a.eps, s), "input_layernorm");
  // One token: one product over the stacked rows gives q|k|v contiguous. More tokens: three so that
  // q, k and v each come out [n][heads][head_dim] as the kernels below take them.
  float* q = g.qkv.as<float>();
  float *k, *v;
  if (n == 1) {
    gpu_linear(g, a.wqkv, 0, qd + 2 * kvd, 1, xb, q, 0.f, "q/k/v projection");
    k = q + qd;
    v = k + kvd;
  } else {
    k = q + n * qd;
    v = k + n * kvd;
    gpu_linear(g, a.wqkv, 0, qd, n, xb, q, 0.f, "q_proj");
    gpu_linear(g, a.wqkv, qd, kvd, n, xb, k, 0.f, "k_proj");
    gpu_linear(g, a.wqkv, qd + kvd, kvd, n, xb, v, 0.f, "v_proj");
  }
  if (a.q_norm.as()) g.ok(api.mxc_rmsnorm(q, a.q_norm.as<float>(), q, MXC_F32, n * d.n_heads, d.head_dim, a.eps, s), "q_norm");
  if (a.k_norm.as()) g.ok(api.mxc_rmsnorm(k, a.k_norm.as<float>(), k, MXC_F32, n * d.n_kv_heads, d.head_dim, a.eps, s), "k_norm");
  g.ok(api.mxc_rope_neox(q, g.d_pos(), n, d.n_heads, d.head_dim, a.theta, s), "rope q");
  g.ok(api.mxc_rope_neox(k, g.d_pos(), n, d.n_kv_heads, d.head_dim, a.theta, s), "rope k");

  const mxc_kv_layer* kv = &g.kv.layers[size_t(a.layer)];
  for (const AttentionRun& r : p.runs) {
    g.ok(api.mxc_kv_store(kv, r.seq, k + r.first * kvd, v + r.first * kvd, g.d_pos() + r.first, r.count, s), "KV store");
  }
  const float scale = float(1.0 / std::sqrt(double(d.head_dim)));
  float* att = g.att.as<float>();
  for (const AttentionRun& r : p.runs) {
    if (r.count < 2) continue;
    g.ok(api.mxc_attention_prefill(kv, r.seq, q + r.first * qd, r.count, d.n_heads, r.pos0, scale, att + r.first * qd, s),
         "attention (prefill)");
  }
  for (const DecodeGroup& gr : p.decode) {
    const int64_t max_len = decode_max_len > 0 ? decode_max_len : gr.max_len;
    const size_t ws = api.mxc_attention_decode_workspace_bytes(gr.count, d.n_heads, d.head_dim, max_len);
    void* w_ptr = g.decode_workspace(ws);
    g.ok(api.mxc_attention_decode(kv, g.d_dec_seq() + gr.first, g.d_dec_len() + gr.first, max_len, q + gr.first * qd,
                                  gr.count, d.n_heads, scale, att + gr.first * qd, w_ptr, g.decode_ws.bytes(), s),
         "attention (decode)");
  }
  g.ok(api.mxc_convert(att, MXC_F32, xb, MXC_BF16, n * qd, s), "attention output to bf16");
  // o_proj accumulates into the residual stream (beta = 1).
  gpu_linear(g, a.wo, 0, hd, n, xb, g.x.as<float>(), 1.f, "o_proj");
}

void gpu_attention_forward(GpuAttention& a) {
  GpuContext& g = *a.ctx;
  const BatchPlan& p = g.plan;
  if (p.n <= 0) throw std::logic_error("gpu attention: no batch begun");
  const uint64_t t0 = now_ns();
  g.bind();
  profile_mark(g, ProfileMark::attention_begin);
  if (decode_step(p) && graphs_enabled()) {
    // The graph bakes the KV slot of each token (a host argument of the KV store) and a bound on the
    // context length, rounded up to a power of two so a few graphs serve every length.
    const int64_t cap = g.kv.capacity;
    int64_t longest = 0;
    std::string key;
    for (const AttentionRun& r : p.runs) {
      longest = std::max(longest, r.pos0 + 1);
      key += std::to_string(r.seq) + ",";
    }
    int64_t bound = 256;
    while (bound < longest) bound *= 2;
    if (bound > cap) bound = cap;
    key += "@" + std::to_string(bound);
    // The workspace must not move under a captured graph: size it for the whole context first.
    g.decode_workspace(g.api->mxc_attention_decode_workspace_bytes(p.n, g.dims.n_heads, g.dims.head_dim, cap));
    a.graphs->run(g, key, [&] { issue(a, p, bound); });
  } else {
    issue(a, p, 0);
  }
  profile_mark(g, ProfileMark::attention_end);
  g.counters.attention++;
  g.counters.attention_issue_ns += now_ns() - t0;
}

}  // namespace mixtile::gpu
