// A linear layer's weight on the GPU ([rows][k], a Linear's weight as stored) and its product with a BF16
// activation. Two ways to hold it (MIXTILE_GPU_WEIGHTS):
// - quantized: each source tensor of type Q8_0 / Q4_K / Q5_K / Q6_K stays in its GGUF blocks (as llama.cpp
//   keeps them: the VRAM of the file's bytes); one token (and the lm_head's few rows) runs the quantized GEMV
//   (mxc_gemv_quant), which reads the blocks directly; larger batches dequantize the weight into the context's
//   shared BF16 scratch (weight_scratch, sized for the largest such weight) and run cuBLAS as before. The GEMV
//   reads every quantized part of a product in one launch (mxc_gemv_quant_multi: a token's fused q/k/v). Parts of
//   other types (F16, BF16, F32, ...) are widened to BF16 each; a weight with no quantized part is held as in bf16.
// - bf16: every part widened to BF16 at load and stacked into one matrix (2 bytes a weight; the earlier way).
#pragma once
#include <vector>

#include "gpu/context.h"
#include "tensor.h"

namespace mixtile::gpu {

enum class GpuWeightMode { bf16, quantized };
// MIXTILE_GPU_WEIGHTS: "quantized" (the default) or "bf16"; throws std::invalid_argument on any other value.
GpuWeightMode gpu_weight_mode();

struct GpuLinear {
  struct Part {
    DeviceBuffer data;
    mxc_dtype type = MXC_BF16;  // MXC_BF16 or a type mxc_gemv_quant reads
    int64_t row0 = 0, rows = 0;
  };
  std::vector<Part> parts;  // stacked row-wise, in order
  int64_t k = 0, rows = 0;
  bool gemv_only = false;  // read by the GEMV at every m (the lm_head: at most LOGIT_ROWS rows); no scratch
};

// Uploads parts with the same row length stacked row-wise (fused q/k/v, gate/up); throws std::invalid_argument
// naming `what` if the row lengths differ. gemv_only (the lm_head, whose callers pass at most
// GpuContext::LOGIT_ROWS rows): quantized parts are always read by the GEMV, so the scratch is not grown for it;
// otherwise batches of 2+ rows dequantize into the scratch, grown here to fit this weight.
GpuLinear gpu_linear_upload(GpuContext& g, const std::vector<const Weight*>& parts, const char* what,
                            bool gemv_only = false);

// y[m][n] = x[m][k] . W[row0, row0 + n)^T (+ beta * y), y f32, x BF16. Queued on the context's stream; one row of x
// (a decode step) issues only kernels, so it can be captured in a graph.
void gpu_linear(GpuContext& g, const GpuLinear& w, int64_t row0, int64_t n, int64_t m, const uint16_t* x, float* y,
                float beta, const char* what);

// Device bytes the weight takes.
size_t gpu_linear_bytes(const GpuLinear& w);

}  // namespace mixtile::gpu
