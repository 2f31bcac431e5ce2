// Shared core of linear and experts: y = W · a for a block of weight rows against a block of
// activation rows, with activations pre-converted ("act type") to what the weight type's dot wants:
//   F32, F16 weights  -> F32 activations
//   BF16 weights      -> BF16 activations (vdpbf16ps on AVX-512 BF16)
//   Q8_0 weights      -> Q8_0 activations (int8 dots)
//   Q4_K/Q5_K/Q6_K    -> Q8_K activations (int8 dots, bsums for the min terms)
// Dispatch: gemm_kernels() lists entries best first; gemm_select picks the first whose ISA is
// active and whose accepts() takes the call (e.g. token-lane kernels need 16+ tokens).
// Kernels per ISA: scalar (all types), avx2 (F32 F16 BF16 Q4_K Q6_K Q8_0), avx512 (F32 F16),
// avx512vnni (Q8_0 Q4_K Q5_K Q6_K; the K-quants also token-lane), avx512bf16 (BF16). Weights are read in
// the file's row-major layout; no kernel needs a repacked weight.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "cpu/isa.h"
#include "tensor.h"

namespace mixtile {

// Activation type for a weight type (see table above).
GgmlType act_type_for(GgmlType wtype);
// Bytes of one converted activation row of k elements.
size_t act_row_bytes(GgmlType wtype, int64_t k);
// Distance between converted activation rows in a batch: act_row_bytes, plus one cache line where
// that is a multiple of 512 bytes. Rows a multiple of 4 KiB apart (BF16 at k = 2048) all fall in
// the same L1 sets, so a kernel reading 6 token rows and 4 weight rows at once thrashes its L1
// (BF16 4 x 6 tile, k 2048, 32 tokens, one Zen 4 core: 142 -> 191 GFLOP/s with the padding).
size_t act_row_stride(GgmlType wtype, int64_t k);
// Converts one F32 row x[k] into the activation form for `wtype` at dst (act_row_bytes bytes).
// k must be a whole number of the weight type's blocks.
// Uses the AVX-512 version when the active ISA allows (identical bytes).
void convert_act_row(GgmlType wtype, const float* x, int64_t k, void* dst);
void convert_act_row_avx512(GgmlType wtype, const float* x, int64_t k, void* dst);

// g[i] = SiLU(g[i]) * u[i] for i < n (the experts' gate/up combine); AVX-512 when active.
void silu_mul(float* g, const float* u, int64_t n);
void silu_mul_avx512(float* g, const float* u, int64_t n);

struct GemmArgs {
  const uint8_t* w;   // n_rows weight rows, each w_stride bytes (k elements of the weight type)
  size_t w_stride;
  int64_t n_rows;
  const uint8_t* a;   // n_tok activation rows (act type), each a_stride bytes
  size_t a_stride;
  int64_t n_tok;
  int64_t k;          // elements per row (multiple of the weight block size)
  float* y;           // y[t * ldy + r] = dot(w row r, a row t), r < n_rows, t < n_tok
  int64_t ldy;
};

using GemmFn = void (*)(const GemmArgs&);
struct GemmKernel {
  Isa isa;
  GgmlType wtype;
  const char* name;
  GemmFn fn;
  bool (*accepts)(const GemmArgs&);  // nullptr = takes every call
};

// Every entry, best first (defined in matmul.cc).
const std::vector<GemmKernel>& gemm_kernels();
// First entry for wtype that the active ISA runs and that accepts `probe`; never null for a
// supported type (the scalar entry takes everything).
const GemmKernel* gemm_select(GgmlType wtype, const GemmArgs& probe);

// Scalar references (matmul-scalar.cc), one per weight type.
void gemm_f32_scalar(const GemmArgs&);
void gemm_f16_scalar(const GemmArgs&);
void gemm_bf16_scalar(const GemmArgs&);
void gemm_q8_0_scalar(const GemmArgs&);
void gemm_q4_k_scalar(const GemmArgs&);
void gemm_q5_k_scalar(const GemmArgs&);
void gemm_q6_k_scalar(const GemmArgs&);

// Fast paths (matmul-<isa>.cc), each compiled with only its own ISA flags.
void gemm_bf16_avx512bf16(const GemmArgs&);
void gemm_q4_k_avx512vnni(const GemmArgs&);
void gemm_q4_k_lanes_avx512vnni(const GemmArgs&);  // >= 16 tokens: tokens in lanes
void gemm_q5_k_avx512vnni(const GemmArgs&);
void gemm_q5_k_lanes_avx512vnni(const GemmArgs&);  // >= 16 tokens: tokens in lanes
void gemm_q6_k_avx512vnni(const GemmArgs&);
void gemm_q6_k_lanes_avx512vnni(const GemmArgs&);  // >= 16 tokens: tokens in lanes
void gemm_q8_0_avx512vnni(const GemmArgs&);
void gemm_f32_avx512(const GemmArgs&);
void gemm_f16_avx512(const GemmArgs&);
void gemm_f32_avx2(const GemmArgs&);
void gemm_f16_avx2(const GemmArgs&);
void gemm_bf16_avx2(const GemmArgs&);
void gemm_q4_k_avx2(const GemmArgs&);
void gemm_q6_k_avx2(const GemmArgs&);
void gemm_q8_0_avx2(const GemmArgs&);

}  // namespace mixtile
