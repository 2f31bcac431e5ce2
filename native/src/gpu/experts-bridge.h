// The one place where the GPU forward hands a batch to the routed experts and takes their sum back.
// Today the experts run on the CPU (the rules' backend: AMX-INT8 / AMX-BF16 / AVX-512), with the
// routing computed on the GPU; a GPU path for prefill (streamed expert weights, a CPU/GPU split by a
// cost model) extends run_routed_experts and nothing else.
#pragma once
#include <cstdint>

#include "cpu/experts/experts.h"
#include "gpu/context.h"
#include "gpu/deferred-experts.h"

namespace mixtile::gpu {

struct ExpertsBridgeArgs {
  int layer = 0;
  int64_t n = 0;                    // tokens
  int top_k = 0;
  bool prefill = false;             // this ubatch is a prefill (some sequence has several tokens in it)
  bool prefill_on_gpu = false;      // the rules put the experts' prefill on the GPU (prefill_device: cuda)
  const float* xn = nullptr;        // device [n][hidden]: post_attention_layernorm(x)
  const int32_t* ids = nullptr;     // device [n][top_k]: routed expert ids
  const float* weights = nullptr;   // device [n][top_k]: their routing weights
  float* y = nullptr;               // device [n][hidden]: sum_k weights[k] * expert_ids[k](xn), overwritten
  int defer = 0;                    // decode: the lowest-weighted experts per token held back (deferred-experts.h)
  DeferJoin defer_join = DeferJoin::moe;
};

// Runs the routed experts for this batch. Returns once y's upload is queued on the context's stream.
void run_routed_experts(GpuContext& g, const ExpertsWeights& experts, const ExpertsBridgeArgs& a);

}  // namespace mixtile::gpu
