// The attention half of a decoder layer on the GPU, for the ubatch planned in the context:
// x += o_proj(attention(rope(qk_norm(qkv(rms_norm(x)))))), K/V stored into the VRAM cache first.
#pragma once
#include <memory>

#include "gpu/context.h"
#include "gpu/graphs.h"
#include "gpu/linear.h"
#include "tensor.h"

namespace mixtile::gpu {

struct GpuAttention {
  std::shared_ptr<GpuContext> ctx;
  int layer = 0;
  float eps = 1e-6f, theta = 1e6f;
  DeviceBuffer norm;            // input_layernorm f32 [hidden]
  DeviceBuffer q_norm, k_norm;  // f32 [head_dim] (empty: none)
  GpuLinear wqkv;               // [q_dim + 2 kv_dim][hidden]: q, k, v rows stacked (linear.h)
  GpuLinear wo;                 // [hidden][q_dim]
  std::unique_ptr<GraphCache> graphs;  // one-token steps, by KV slot and context-length bucket
};

// Checks shapes against the context's dims (throws std::invalid_argument naming the weight) and uploads.
std::shared_ptr<GpuAttention> gpu_attention_create(std::shared_ptr<GpuContext> ctx, int layer, float eps,
                                                   double rope_theta, const Weight& norm, const Weight* q_norm,
                                                   const Weight* k_norm, const Weight& wq, const Weight& wk,
                                                   const Weight& wv, const Weight& wo);

// Queues the block for the current ubatch (gpu_batch_begin) on the context's stream; x stays on the GPU.
// A one-token ubatch replays a captured graph (graphs.h).
void gpu_attention_forward(GpuAttention& a);

}  // namespace mixtile::gpu
