// GEMM dispatch table, best entry first per weight type; scalar entries last take every call.
#include "cpu/matmul/matmul.h"

namespace mixtile {

// Token-lane kernels work on full groups of 16 tokens (one per f32/int32 lane); with fewer, every
// lane would be padding, so calls below this go to the row kernels. On 256 tokens the Q4_K
// token-lane kernel measured 162-175 vs 135-147 GFLOP/s per core for the row kernel
// (npx tsx src/engine/bench-op.ts --op linear --type q4_k --tokens 256 --threads 1).
constexpr int64_t LANES_MIN_TOKENS = 16;
static bool many_tokens(const GemmArgs& g) { return g.n_tok >= LANES_MIN_TOKENS; }

const std::vector<GemmKernel>& gemm_kernels() {
  static const std::vector<GemmKernel> table = {
      {Isa::avx512bf16, GgmlType::BF16, "bf16-avx512bf16", gemm_bf16_avx512bf16, nullptr},
      {Isa::avx512vnni, GgmlType::Q4_K, "q4_k-lanes-avx512vnni", gemm_q4_k_lanes_avx512vnni, many_tokens},
      {Isa::avx512vnni, GgmlType::Q4_K, "q4_k-avx512vnni", gemm_q4_k_avx512vnni, nullptr},
      {Isa::avx512vnni, GgmlType::Q5_K, "q5_k-lanes-avx512vnni", gemm_q5_k_lanes_avx512vnni, many_tokens},
      {Isa::avx512vnni, GgmlType::Q5_K, "q5_k-avx512vnni", gemm_q5_k_avx512vnni, nullptr},
      {Isa::avx512vnni, GgmlType::Q6_K, "q6_k-lanes-avx512vnni", gemm_q6_k_lanes_avx512vnni, many_tokens},
      {Isa::avx512vnni, GgmlType::Q6_K, "q6_k-avx512vnni", gemm_q6_k_avx512vnni, nullptr},
      {Isa::avx512vnni, GgmlType::Q8_0, "q8_0-avx512vnni", gemm_q8_0_avx512vnni, nullptr},
      {Isa::avx512, GgmlType::F32, "f32-avx512", gemm_f32_avx512, nullptr},
      {Isa::avx512, GgmlType::F16, "f16-avx512", gemm_f16_avx512, nullptr},
      {Isa::avx2, GgmlType::BF16, "bf16-avx2", gemm_bf16_avx2, nullptr},
      {Isa::avx2, GgmlType::F32, "f32-avx2", gemm_f32_avx2, nullptr},
      {Isa::avx2, GgmlType::F16, "f16-avx2", gemm_f16_avx2, nullptr},
      {Isa::avx2, GgmlType::Q4_K, "q4_k-avx2", gemm_q4_k_avx2, nullptr},
      {Isa::avx2, GgmlType::Q6_K, "q6_k-avx2", gemm_q6_k_avx2, nullptr},
      {Isa::avx2, GgmlType::Q8_0, "q8_0-avx2", gemm_q8_0_avx2, nullptr},
      {Isa::scalar, GgmlType::F32, "f32-scalar", gemm_f32_scalar, nullptr},
      {Isa::scalar, GgmlType::F16, "f16-scalar", gemm_f16_scalar, nullptr},
      {Isa::scalar, GgmlType::BF16, "bf16-scalar", gemm_bf16_scalar, nullptr},
      {Isa::scalar, GgmlType::Q8_0, "q8_0-scalar", gemm_q8_0_scalar, nullptr},
      {Isa::scalar, GgmlType::Q4_K, "q4_k-scalar", gemm_q4_k_scalar, nullptr},
      {Isa::scalar, GgmlType::Q5_K, "q5_k-scalar", gemm_q5_k_scalar, nullptr},
      {Isa::scalar, GgmlType::Q6_K, "q6_k-scalar", gemm_q6_k_scalar, nullptr},
  };
  return table;
}

const GemmKernel* gemm_select(GgmlType wtype, const GemmArgs& probe) {
  Isa active = active_isa();
  for (const auto& k : gemm_kernels()) {
    if (k.wtype != wtype || int(k.isa) > int(active)) continue;
    if (k.accepts && !k.accepts(probe)) continue;
    return &k;
  }
  return nullptr;
}

}  // namespace mixtile
