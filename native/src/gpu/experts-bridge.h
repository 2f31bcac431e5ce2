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
//   mapped (default)  one route kernel (mxc_moe_route) writes the normed state and the routing straight into
//                     the pinned h_route (mapped: no copy), and the residual add reads the pinned sum (no upload)
//   fused             the one route kernel into device memory, then the copies as `copy`
//   copy              norm, router GEMM and top-k as three kernels, one copy down, one upload (the old path)
enum class DecodeGlue { copy, fused, mapped };
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
  // Glue mapped: xn, ids and weights are the pinned h_route itself (the route kernel wrote them there), and the
  // sum stays in the pinned h_y for the residual add to read over the bus (y is not written).
  bool mapped = false;
};

// Runs the routed experts for this batch. Returns where the sum lies for the residual add once it may be read
// in stream order: y (its upload queued on the context's stream), or with a.mapped the pinned h_y (which the
// host rewrites only after its next wait for the stream).
const float* run_routed_experts(GpuContext& g, const ExpertsWeights& experts, const ExpertsBridgeArgs& a);

}  // namespace mixtile::gpu
