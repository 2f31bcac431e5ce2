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

// How a decode step's MoE layer moves its routing down and the experts' sum back (MIXTILE_DECODE_GLUE, read at
// every call so one process can compare them; prefill always copies):
//   wait (default)    one route kernel (mxc_moe_route) writes the normed state and the routing straight into the
//                     pinned h_route (mapped: no copy), and the residual add is queued before the experts run
//                     (mxc_add_when_ready): the GPU polls a pinned flag and adds the pinned sum the moment the host
//                     sets it (no launch and no upload after the experts)
//   mapped            as wait, but the add (reading the pinned sum) is launched after the experts
//   fused             the one route kernel into device memory, then the copies as `copy`
//   copy              norm, router GEMM and top-k as three kernels, one copy down, one upload (the old path)
enum class DecodeGlue { copy, fused, mapped, wait };
// The glue of a decode step (copy where mxc_moe_route's limits rule the fused kernel out, hidden > 8192).
DecodeGlue decode_glue(const GpuDims& d);
const char* decode_glue_name(DecodeGlue glue);

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
  // Glue mapped / wait: xn, ids and weights are the pinned h_route itself (the route kernel wrote them there), and
  // the sum stays in the pinned h_y for the residual add to read over the bus (y is not written).
  bool mapped = false;
  // Glue wait: the residual add x += h_y is queued before the experts run and waits on the GPU for ready_flag
  // (pinned, owned by the layer), which the host sets once h_y holds the sum; `routed` marks the routing's end
  // on the stream (the host waits for it, not for the stream, which holds the waiting add).
  float* x = nullptr;
  uint32_t* ready_flag = nullptr;
  HostFence* routed = nullptr;
};

// Runs the routed experts for this batch. Returns where the sum lies for the residual add once it may be read
// in stream order: y (its upload queued on the context's stream), or with a.mapped the pinned h_y (which the
// host rewrites only after its next wait for the stream); nullptr with a.ready_flag (the add is queued and done).
const float* run_routed_experts(GpuContext& g, const ExpertsWeights& experts, const ExpertsBridgeArgs& a);

}  // namespace mixtile::gpu
