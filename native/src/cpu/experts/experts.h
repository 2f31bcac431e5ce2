// Fused routed-experts operator (one native call per MoE layer for the whole batch):
// router softmax -> top-k -> optional renormalisation -> group tokens by expert -> gate+up ->
// SiLU(gate)·up -> down -> weighted sum in token order. Only the selected experts' bytes are read.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cpu/isa.h"
#include "tensor.h"

namespace mixtile {

struct ExpertsWeights {
  // gate, up: [n_expert][ffn][hidden] (ne = {hidden, ffn, n_expert});
  // down:     [n_expert][hidden][ffn] (ne = {ffn, hidden, n_expert}); any supported type each.
  Weight gate, up, down;
  // router (ffn_gate_inp): [n_expert][hidden] F32 (F16/BF16 are widened to F32 at load).
  std::vector<float> router;
  int64_t n_expert = 0, hidden = 0, ffn = 0;
  // Backend the placement rules asked for: "auto" (per weight type: AMX-BF16 for BF16, AMX-INT8 for
  // quantized weights where AMX exists, else the generic entry), "AMXInt8" / "AMXBF16" (that AMX
  // kernel), or "AVX512" / "llamafile" / "generic" (no AMX repack: the generic entry's best kernel).
  std::string backend = "auto";
  // Per-kernel prepared data (repacked layouts), keyed by ExpertsKernel::name; filled at load by
  // each active entry's prepare().
  std::map<std::string, std::shared_ptr<void>> prepared;
};

// One call's routed inputs. ids/weights: [n][top_k]; ids in [0, n_expert).
struct MoeArgs {
  const float* x;        // [n, hidden] F32
  int64_t n;
  const int32_t* ids;    // [n, top_k]
  const float* weights;  // [n, top_k] routing weights (already softmaxed/renormalised)
  int top_k;
  float* y;              // [n, hidden] F32, overwritten
};

// A dispatch entry (experts.cc holds the table, best first). The AMX engineer's entries are
// registered through experts_register_kernel() from native/src/cpu/amx/ and go before the
// built-in ones (see the AMX slot in experts.cc).
struct ExpertsKernel {
  Isa isa;
  const char* name;
  // Sees the weights (types, shapes) and the call (tokens, top_k); false = try the next entry.
  bool (*accepts)(const ExpertsWeights&, const MoeArgs&);
  void (*forward)(const ExpertsWeights&, const MoeArgs&);
  // Optional (nullptr): builds a repacked layout once at experts_load; stored in
  // ExpertsWeights::prepared[name]. Returning nullptr means "not for these weights".
  std::shared_ptr<void> (*prepare)(const ExpertsWeights&);
};
void experts_register_kernel(const ExpertsKernel& k);
const std::vector<ExpertsKernel>& experts_kernels();
// Name of the entry moe_forward_routed would use for this call (for bench output).
const char* experts_select_name(const ExpertsWeights& ew, const MoeArgs& a);

// Validates shapes and types (throws std::invalid_argument with a message) and prepares kernels.
std::shared_ptr<ExpertsWeights> experts_load(const Weight& gate, const Weight& up, const Weight& down,
                                             const Weight& router, const std::string& backend = "auto");

// Routes with the router weights, then runs the experts. x, y: [n, hidden].
void moe_forward(const ExpertsWeights& ew, const float* x, int64_t n, int top_k, bool norm_topk_prob, float* y);
// Router only: ids/weights [n, top_k] (softmax over experts, top-k by probability, ties -> lower
// expert id, renormalised to sum 1 when norm_topk_prob).
void moe_route(const ExpertsWeights& ew, const float* x, int64_t n, int top_k, bool norm_topk_prob, int32_t* ids,
               float* weights);
// Experts with precomputed routing (tests, a GPU router). Throws std::invalid_argument on ids out of range.
void moe_forward_routed(const ExpertsWeights& ew, const float* x, int64_t n, const int32_t* ids,
                        const float* weights, int top_k, float* y);

// The built-in generic entry (group by expert, gemm_select per weight type, pool-parallel).
void experts_forward_generic(const ExpertsWeights& ew, const MoeArgs& a);

}  // namespace mixtile
