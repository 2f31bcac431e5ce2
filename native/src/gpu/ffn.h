// The FFN half of a decoder layer with its norm on the GPU: the MoE block (router and top-k on the GPU,
// routed experts through experts-bridge) or the dense SwiGLU MLP (all on the GPU). x += ffn(rms_norm(x)).
#pragma once
#include <memory>
#include <string>

#include "cpu/experts/experts.h"
#include "gpu/context.h"
#include "gpu/deferred-experts.h"
#include "gpu/graphs.h"
#include "gpu/linear.h"
#include "tensor.h"

namespace mixtile::gpu {

struct GpuFfn {
  std::shared_ptr<GpuContext> ctx;
  int layer = 0;
  float eps = 1e-6f;
  DeviceBuffer norm;  // post_attention_layernorm f32 [hidden]
  // MoE: router f32 [n_experts][hidden] on the GPU, experts in RAM (CPU kernels, the rules' backend).
  std::shared_ptr<ExpertsWeights> experts;
  DeviceBuffer router;
  DeviceBuffer route_counter;  // uint32, zero between launches: mxc_moe_route's count of finished blocks
  PinnedBuffer ready_flag;     // uint32: glue wait's flag (the host sets it when the experts' sum is ready)
  HostFence routed;            // glue wait: the end of the routing on the stream
  int top_k = 0;
  bool norm_topk_prob = true;
  bool experts_prefill_on_gpu = false;
  // Decode steps: experts per token held back to the next layer, and where they join (deferred-experts.h).
  int defer_experts = 0;
  DeferJoin defer_join = DeferJoin::moe;
  // Dense: gate|up stacked [2 ffn][hidden], down [hidden][ffn] (linear.h).
  GpuLinear gate_up, down;
  int64_t ffn = 0;
  std::unique_ptr<GraphCache> graphs;  // one-token steps (norm, router, top-k / the dense MLP)
};

// Throw std::invalid_argument naming the weight whose shape does not fit.
std::shared_ptr<GpuFfn> gpu_moe_create(std::shared_ptr<GpuContext> ctx, int layer, float eps, const Weight& norm,
                                       const Weight& router, const Weight& gate_exps, const Weight& up_exps,
                                       const Weight& down_exps, int top_k, bool norm_topk_prob,
                                       const std::string& backend, bool experts_prefill_on_gpu, int defer_experts = 0,
                                       DeferJoin defer_join = DeferJoin::moe);
std::shared_ptr<GpuFfn> gpu_mlp_create(std::shared_ptr<GpuContext> ctx, int layer, float eps, const Weight& norm,
                                       const Weight& gate, const Weight& up, const Weight& down);

// x += ffn(rms_norm(x)) for the current ubatch; the MoE block waits once for the routing to reach the host.
void gpu_ffn_forward(GpuFfn& f);

}  // namespace mixtile::gpu
