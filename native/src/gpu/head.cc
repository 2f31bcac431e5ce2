// GPU embedding and output head; see head.h.
#include "gpu/head.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "gpu/deferred-experts.h"
#include "gpu/weights-upload.h"

namespace mixtile::gpu {

std::shared_ptr<GpuEmbedding> gpu_embedding_create(std::shared_ptr<GpuContext> ctx, const Weight& table) {
  if (table.ne[0] != ctx->dims.hidden || table.ne[2] != 1) {
    throw std::invalid_argument("model.embed_tokens: rows of " + std::to_string(table.ne[0]) +
                                " elements, the model's hidden size is " + std::to_string(ctx->dims.hidden));
  }
  auto e = std::make_shared<GpuEmbedding>();
  e->ctx = ctx;
  e->vocab = table.ne[1];
  switch (table.type) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16:
    case GgmlType::Q8_0:
      e->device_table = upload_raw(*ctx, table, "model.embed_tokens");
      e->device_type = mxc_dtype(table.type);
      break;
    default:  // K-quants: the GPU gather reads whole-element types and Q8_0 only
      e->device_table = upload_bf16_stacked(*ctx, {&table}, "model.embed_tokens");
      e->device_type = MXC_BF16;
  }
  return e;
}

void gpu_embedding_forward(GpuEmbedding& e, const int32_t* tokens, int64_t n) {
  GpuContext& g = *e.ctx;
  if (n <= 0 || n > g.dims.ubatch) throw std::invalid_argument("gpu embedding: batch size out of range");
  g.bind();
  g.meta_fence.wait();
  int32_t* h = g.h_meta.as<int32_t>() + 4 * g.dims.ubatch;
  std::memcpy(h, tokens, size_t(n) * 4);
  g.ok(g.api->mxc_memcpy_h2d(g.d_tokens(), h, size_t(n) * 4, g.stream), "token ids to the GPU");
  g.meta_fence.record(g.stream);
  g.ok(g.api->mxc_embed_gather(e.device_table.as(), e.device_type, e.vocab, int(g.dims.hidden), g.d_tokens(), n,
                               g.x.as<float>(), g.stream),
       "embedding gather");
  g.counters.embed_tokens += uint64_t(n);
}

std::shared_ptr<GpuLmHead> gpu_lm_head_create(std::shared_ptr<GpuContext> ctx, float eps, const Weight& norm,
                                              const Weight& out) {
  const GpuDims& d = ctx->dims;
  if (norm.ne[0] != d.hidden || norm.rows() != 1) throw std::invalid_argument("model.norm: expected a vector of hidden size");
  if (out.ne[0] != d.hidden || out.ne[1] != d.vocab || out.ne[2] != 1) {
    throw std::invalid_argument("lm_head: expected shape {" + std::to_string(d.hidden) + ", " + std::to_string(d.vocab) +
                                "} (ggml order), got {" + std::to_string(out.ne[0]) + ", " + std::to_string(out.ne[1]) +
                                "}");
  }
  auto h = std::make_shared<GpuLmHead>();
  h->ctx = ctx;
  h->eps = eps;
  h->norm = upload_f32(*ctx, norm, "model.norm");
  h->out = gpu_linear_upload(*ctx, {&out}, "lm_head", /*gemv_only=*/true);
  return h;
}

void gpu_lm_head_forward(GpuLmHead& h, const int32_t* rows, int64_t n_rows, float* logits) {
  GpuContext& g = *h.ctx;
  const CudaApi& api = *g.api;
  const GpuDims& d = g.dims;
  const int64_t n = g.plan.n;
  if (n <= 0) throw std::logic_error("gpu lm_head: no batch begun");
  const uint64_t t0 = now_ns();
  g.bind();
  deferred_experts_join(g);  // the last layer's held-back experts, before model.norm
  const int64_t chunk = std::min(g.dims.ubatch, GpuContext::LOGIT_ROWS);
  auto* xb = g.xb.as<uint16_t>();
  for (int64_t r0 = 0; r0 < n_rows; r0 += chunk) {
    const int64_t c = std::min(chunk, n_rows - r0);
    g.meta_fence.wait();
    int32_t* hr = g.h_meta.as<int32_t>() + 5 * d.ubatch;
    std::memcpy(hr, rows + r0, size_t(c) * 4);
    g.ok(api.mxc_memcpy_h2d(g.d_rows(), hr, size_t(c) * 4, g.stream), "logit rows to the GPU");
    g.meta_fence.record(g.stream);
    // The wanted rows of x: an f32 "embedding gather" with x as the table.
    float* sel = g.sel.as<float>();
    g.ok(api.mxc_embed_gather(g.x.as(), MXC_F32, n, int(d.hidden), g.d_rows(), c, sel, g.stream), "lm_head rows");
    g.ok(api.mxc_rmsnorm(sel, h.norm.as<float>(), xb, MXC_BF16, c, int(d.hidden), h.eps, g.stream), "model.norm");
    gpu_linear(g, h.out, 0, d.vocab, c, xb, g.logits.as<float>(), 0.f, "lm_head");
    const size_t bytes = size_t(c * d.vocab) * 4;
    g.ok(api.mxc_memcpy_d2h(g.h_logits.as(), g.logits.as(), bytes, g.stream), "logits to the host");
    g.sync();
    std::memcpy(logits + r0 * d.vocab, g.h_logits.as(), bytes);
    g.counters.d2h_bytes += bytes;
  }
  g.counters.lm_head_rows += uint64_t(n_rows);
  g.counters.lm_head_ns += now_ns() - t0;
}

}  // namespace mixtile::gpu
