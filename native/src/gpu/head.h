// The ends of the forward on the GPU: the token embedding gathered from a table in VRAM (a CPU embedding
// needs nothing here: its rows go up with the hidden state) and the output head (final RMSNorm and
// lm_head GEMM for the wanted rows only, logits copied back through pinned memory).
#pragma once
#include <memory>

#include "gpu/context.h"
#include "gpu/linear.h"
#include "tensor.h"

namespace mixtile::gpu {

struct GpuEmbedding {
  std::shared_ptr<GpuContext> ctx;
  DeviceBuffer device_table;  // F32/F16/BF16/Q8_0 as stored, other types widened to BF16
  mxc_dtype device_type = MXC_BF16;
  int64_t vocab = 0;
};

std::shared_ptr<GpuEmbedding> gpu_embedding_create(std::shared_ptr<GpuContext> ctx, const Weight& table);
// x [n][hidden] on the device = rows tokens[0..n) (checked < vocab by the caller).
void gpu_embedding_forward(GpuEmbedding& e, const int32_t* tokens, int64_t n);

struct GpuLmHead {
  std::shared_ptr<GpuContext> ctx;
  float eps = 1e-6f;
  DeviceBuffer norm;  // model.norm f32 [hidden]
  GpuLinear out;      // [vocab][hidden] (linear.h; read by the GEMV when quantized: at most LOGIT_ROWS rows a pass)
};

std::shared_ptr<GpuLmHead> gpu_lm_head_create(std::shared_ptr<GpuContext> ctx, float eps, const Weight& norm,
                                              const Weight& out);
// logits [n_rows][vocab] (host) for rows of the current ubatch (checked < n by the caller). Waits for the GPU.
void gpu_lm_head_forward(GpuLmHead& h, const int32_t* rows, int64_t n_rows, float* logits);

}  // namespace mixtile::gpu
