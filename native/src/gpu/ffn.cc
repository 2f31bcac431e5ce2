// GPU FFN blocks; see ffn.h.
#include "gpu/ffn.h"

#include <cstdlib>
#include <stdexcept>

#include "gpu/decode-profile.h"
#include "gpu/experts-bridge.h"
#include "gpu/gpu-experts-bridge.h"
#include "gpu/weights-upload.h"
#include "threadpool.h"

namespace mixtile::gpu {

static std::string name(int layer, const char* part) { return "model.layers." + std::to_string(layer) + "." + part; }

static void expect_shape(const Weight& w, int64_t ne0, int64_t ne1, const std::string& what) {
  if (w.ne[0] != ne0 || w.ne[1] != ne1 || w.ne[2] != 1 || w.ne[3] != 1) {
    throw std::invalid_argument(what + ": expected shape {" + std::to_string(ne0) + ", " + std::to_string(ne1) +
                                "} (ggml order), got {" + std::to_string(w.ne[0]) + ", " + std::to_string(w.ne[1]) +
                                ", " + std::to_string(w.ne[2]) + "}");
  }
}

std::shared_ptr<GpuFfn> gpu_moe_create(std::shared_ptr<GpuContext> ctx, int layer, float eps, const Weight& norm,
                                       const Weight& router, const Weight& gate_exps, const Weight& up_exps,
                                       const Weight& down_exps, int top_k, bool norm_topk_prob,
                                       const std::string& backend, bool experts_prefill_on_gpu, int defer_experts,
                                       DeferJoin defer_join) {
  const GpuDims& d = ctx->dims;
  expect_shape(norm, d.hidden, 1, name(layer, "post_attention_layernorm"));
  expect_shape(router, d.hidden, d.n_experts, name(layer, "mlp.gate"));
  if (top_k != d.top_k) {
    throw std::invalid_argument(name(layer, "mlp") + ": top_k " + std::to_string(top_k) +
                                " differs from the GPU context's " + std::to_string(d.top_k));
  }
  auto f = std::make_shared<GpuFfn>();
  f->ctx = ctx;
  f->layer = layer;
  f->eps = eps;
  try {
    f->experts = experts_load(gate_exps, up_exps, down_exps, router, backend);
  } catch (const std::exception& e) {
    throw std::invalid_argument(name(layer, "mlp.experts") + ": " + e.what());
  }
  if (f->experts->hidden != d.hidden || f->experts->n_expert != d.n_experts) {
    throw std::invalid_argument(name(layer, "mlp.experts") + ": shape differs from the model's hidden size / experts");
  }
  f->top_k = top_k;
  if (defer_experts < 0 || defer_experts > top_k) {
    throw std::invalid_argument(name(layer, "mlp.experts") + ": max_deferred_experts_per_token " +
                                std::to_string(defer_experts) + " outside [0, top-k " + std::to_string(top_k) + "]");
  }
  f->defer_experts = defer_experts;
  f->defer_join = defer_join;
  f->norm_topk_prob = norm_topk_prob;
  f->experts_prefill_on_gpu = experts_prefill_on_gpu;
  if (experts_prefill_on_gpu) prepare_gpu_experts(*ctx, *f->experts, layer);
  f->norm = upload_f32(*ctx, norm, "post_attention_layernorm");
  f->router = upload_f32(*ctx, router, "mlp.gate");
  f->route_counter = ctx->alloc(4, "MoE route counter");
  ctx->ok(ctx->api->mxc_memset(f->route_counter.as(), 0, 4, ctx->stream), "MoE route counter");
  f->ready_flag = PinnedBuffer(ctx->api, 64, "pinned MoE sum flag");
  *f->ready_flag.as<uint32_t>() = 0;
  f->routed.init(ctx->api);
  f->graphs = std::make_unique<GraphCache>(ctx->api);
  return f;
}

std::shared_ptr<GpuFfn> gpu_mlp_create(std::shared_ptr<GpuContext> ctx, int layer, float eps, const Weight& norm,
                                       const Weight& gate, const Weight& up, const Weight& down) {
  const GpuDims& d = ctx->dims;
  expect_shape(norm, d.hidden, 1, name(layer, "post_attention_layernorm"));
  const int64_t ffn = gate.ne[1];
  if (ffn > d.ffn) {
    throw std::invalid_argument(name(layer, "mlp") + ": width " + std::to_string(ffn) +
                                " exceeds the GPU context's " + std::to_string(d.ffn));
  }
  expect_shape(gate, d.hidden, ffn, name(layer, "mlp.gate_proj"));
  expect_shape(up, d.hidden, ffn, name(layer, "mlp.up_proj"));
  expect_shape(down, ffn, d.hidden, name(layer, "mlp.down_proj"));
  auto f = std::make_shared<GpuFfn>();
  f->ctx = ctx;
  f->layer = layer;
  f->eps = eps;
  f->ffn = ffn;
  f->norm = upload_f32(*ctx, norm, "post_attention_layernorm");
  f->gate_up = gpu_linear_upload(*ctx, {&gate, &up}, "mlp gate/up");
  f->down = gpu_linear_upload(*ctx, {&down}, "mlp.down_proj");
  f->graphs = std::make_unique<GraphCache>(ctx->api);
  return f;
}

// MIXTILE_POOL_HOT_US (default 3000, 0 = off): how long after a decode step's MoE layer the CPU pool's idle
// workers keep spinning instead of sleeping (threadpool.h pool_keep_hot), so the next layer's experts (and the
// next token's first layer, after the output head and sampling) find them awake; an idle server stops
// spinning that long after its last step.
static uint64_t pool_hot_us() {
  static const uint64_t us = [] {
    const char* e = std::getenv("MIXTILE_POOL_HOT_US");
    if (!e || !*e) return uint64_t(3000);
    const long long v = std::atoll(e);
    return v > 0 ? uint64_t(v) : uint64_t(0);
  }();
  return us;
}

static void moe_forward(GpuFfn& f, GpuContext& g) {
  const CudaApi& api = *g.api;
  const GpuDims& d = g.dims;
  const int64_t n = g.plan.n;
  float* xn = g.route.as<float>();
  int32_t* ids = reinterpret_cast<int32_t*>(xn + n * d.hidden);
  float* weights = reinterpret_cast<float*>(ids + n * f.top_k);
  const bool decode = decode_step(g.plan);
  const DecodeGlue glue = decode ? decode_glue(d) : DecodeGlue::copy;
  if (decode) pool_keep_hot(pool_hot_us());  // the experts follow within ~100 us: keep the pool from sleeping
  // A held-back part of the previous layer that joins before this router (join attention; any part when this
  // step is no decode step, which cannot happen within one ubatch but keeps x whole if it did).
  if (deferred_experts_pending(g) && (deferred_experts_join_kind(g) == DeferJoin::attention || !decode)) {
    deferred_experts_join(g);
  }
  const bool mapped = glue == DecodeGlue::mapped || glue == DecodeGlue::wait;
  if (mapped) {  // the route kernel writes into the pinned copy, packed the same way
    xn = g.h_route.as<float>();
    ids = reinterpret_cast<int32_t*>(xn + n * d.hidden);
    weights = reinterpret_cast<float*>(ids + n * f.top_k);
  }
  auto route = [&] {
    if (glue != DecodeGlue::copy) {
      g.ok(api.mxc_moe_route(g.x.as<float>(), f.norm.as<float>(), f.eps, f.router.as<float>(), n, int(d.hidden),
                             d.n_experts, f.top_k, f.norm_topk_prob ? 1 : 0, xn, g.router_logits.as<float>(), ids,
                             weights, f.route_counter.as<uint32_t>(), g.stream),
           "MoE route (norm, router, top-k)");
      return;
    }
    g.ok(api.mxc_rmsnorm(g.x.as<float>(), f.norm.as<float>(), xn, MXC_F32, n, int(d.hidden), f.eps, g.stream),
         "post_attention_layernorm");
    g.ok(api.mxc_gemm_f32(n, d.n_experts, d.hidden, xn, f.router.as<float>(), g.router_logits.as<float>(), g.stream),
         "router");
    g.ok(api.mxc_router_topk(g.router_logits.as<float>(), n, d.n_experts, f.top_k, f.norm_topk_prob ? 1 : 0, ids,
                             weights, g.stream),
         "router top-k");
  };
  // The key names the glue: its kernels and pointers differ.
  if (decode && graphs_enabled()) f.graphs->run(g, std::to_string(n) + decode_glue_name(glue), route);
  else route();
  profile_mark(g, ProfileMark::route_end);
  ExpertsBridgeArgs a;
  a.layer = f.layer;
  a.n = n;
  a.top_k = f.top_k;
  a.prefill = g.plan.prefill;
  a.prefill_on_gpu = f.experts_prefill_on_gpu;
  a.defer = decode ? f.defer_experts : 0;
  a.defer_join = f.defer_join;
  a.xn = xn;
  a.ids = ids;
  a.weights = weights;
  a.y = g.tmp.as<float>();
  a.mapped = mapped;
  if (glue == DecodeGlue::wait) {
    a.x = g.x.as<float>();
    a.ready_flag = f.ready_flag.as<uint32_t>();
    a.routed = &f.routed;
  }
  // A pinned sum (glue mapped) is read over the bus by the add itself: no upload before it; glue wait queued it.
  if (const float* sum = run_routed_experts(g, *f.experts, a)) {
    g.ok(api.mxc_add(g.x.as<float>(), sum, g.x.as<float>(), n * d.hidden, g.stream), "MoE residual add");
    profile_mark(g, ProfileMark::add_end);
  }
  g.counters.moe++;
}

static void mlp_forward(GpuFfn& f, GpuContext& g) {
  deferred_experts_join(g);  // a MoE layer before this dense one held experts back
  const CudaApi& api = *g.api;
  const GpuDims& d = g.dims;
  const int64_t n = g.plan.n;
  auto mlp = [&] {
    auto* xb = g.xb.as<uint16_t>();
    g.ok(api.mxc_rmsnorm(g.x.as<float>(), f.norm.as<float>(), xb, MXC_BF16, n, int(d.hidden), f.eps, g.stream),
         "post_attention_layernorm");
    float* gu = g.gate_up.as<float>();
    gpu_linear(g, f.gate_up, 0, 2 * f.ffn, n, xb, gu, 0.f, "gate/up");
    g.ok(api.mxc_silu_mul(gu, gu + f.ffn, 2 * f.ffn, xb, MXC_BF16, n, int(f.ffn), g.stream), "silu * up");
    gpu_linear(g, f.down, 0, d.hidden, n, xb, g.x.as<float>(), 1.f, "down_proj");
  };
  if (decode_step(g.plan) && graphs_enabled()) f.graphs->run(g, std::to_string(n), mlp);
  else mlp();
  g.counters.mlp++;
}

void gpu_ffn_forward(GpuFfn& f) {
  GpuContext& g = *f.ctx;
  if (g.plan.n <= 0) throw std::logic_error("gpu ffn: no batch begun");
  g.bind();
  if (f.experts) moe_forward(f, g);
  else mlp_forward(f, g);
}

}  // namespace mixtile::gpu
