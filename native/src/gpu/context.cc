// GPU context of a loaded model; see context.h.
#include "gpu/context.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include "gpu/decode-profile.h"
#include "gpu/deferred-experts.h"

namespace mixtile::gpu {

uint64_t now_ns() {
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

void check(const CudaApi& api, mxc_status st, const char* what) {
  if (st != MXC_OK) throw std::runtime_error(std::string(what) + ": " + api.mxc_last_error());
}

DeviceBuffer::DeviceBuffer(const CudaApi* api, int device, size_t bytes, const char* what)
    : api_(api), device_(device), bytes_(bytes) {
  check(*api, api->mxc_malloc(&p_, bytes), what);
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    reset();
    api_ = o.api_;
    device_ = o.device_;
    p_ = o.p_;
    bytes_ = o.bytes_;
    o.p_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

void DeviceBuffer::reset() {
  if (p_) {
    api_->mxc_set_device(device_);
    api_->mxc_free(p_);  // cudaFree waits for work that may still use it
  }
  p_ = nullptr;
  bytes_ = 0;
}

PinnedBuffer::PinnedBuffer(const CudaApi* api, size_t bytes, const char* what) : api_(api), bytes_(bytes) {
  check(*api, api->mxc_host_alloc(&p_, bytes), what);
}

PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& o) noexcept {
  if (this != &o) {
    reset();
    api_ = o.api_;
    p_ = o.p_;
    bytes_ = o.bytes_;
    o.p_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

void PinnedBuffer::reset() {
  if (p_) api_->mxc_host_free(p_);
  p_ = nullptr;
  bytes_ = 0;
}

void HostFence::init(const CudaApi* api) {
  api_ = api;
  check(*api, api->mxc_event_create(&e_, 0), "mxc_event_create");
}
HostFence::~HostFence() {
  if (e_) api_->mxc_event_destroy(e_);
}
void HostFence::record(mxc_stream* s) {
  check(*api_, api_->mxc_event_record(e_, s), "mxc_event_record");
  pending_ = true;
}
void HostFence::wait() {
  if (!pending_) return;
  check(*api_, api_->mxc_event_sync(e_), "mxc_event_sync");
  pending_ = false;
}

GpuContext::~GpuContext() {
  if (!api) return;
  api->mxc_set_device(device);
  if (stream) api->mxc_stream_sync(stream);
  if (blas) api->mxc_blas_destroy(blas);
  if (sync_event) api->mxc_event_destroy(sync_event);
  if (stream) api->mxc_stream_destroy(stream);
  // The buffers free themselves afterwards (members); nothing runs on the stream any more.
}

void GpuContext::bind() const { ok(api->mxc_set_device(device), "mxc_set_device"); }

void GpuContext::sync() {
  ok(api->mxc_event_record(sync_event, stream), "mxc_event_record");
  ok(api->mxc_event_sync(sync_event), "GPU forward (a kernel failed; the message names the first error)");
}

void* GpuContext::decode_workspace(size_t bytes) {
  if (decode_ws.bytes() < bytes) {
    const size_t grown = std::max(bytes, decode_ws.bytes() * 2);
    sync();
    decode_ws.reset();
    decode_ws = alloc(grown, "attention decode workspace");
    decode_ws_generation++;
  }
  return decode_ws.as();
}

static void alloc_kv(GpuContext& g, const GpuContextOptions& o) {
  GpuKv& kv = g.kv;
  kv.n_seq = o.n_seq;
  kv.capacity = o.ctx;
  kv.layers.assign(o.kv_layers.size(), mxc_kv_layer{});
  const size_t per = size_t(o.n_seq) * size_t(o.ctx) * size_t(g.dims.kv_dim()) * 2;  // f16/bf16
  for (size_t l = 0; l < o.kv_layers.size(); ++l) {
    if (!o.kv_layers[l]) continue;
    std::string what = "KV cache of layer " + std::to_string(l);
    kv.storage.push_back(g.alloc(per, what.c_str()));
    void* k = kv.storage.back().as();
    kv.storage.push_back(g.alloc(per, what.c_str()));
    void* v = kv.storage.back().as();
    kv.layers[l] = mxc_kv_layer{k, v, o.kv_type, o.n_seq, o.ctx, g.dims.n_kv_heads, g.dims.head_dim};
    kv.bytes += 2 * per;
  }
}

std::shared_ptr<GpuContext> gpu_context_create(const GpuContextOptions& o) {
  std::string why;
  const CudaApi* api = cuda_api(&why);
  if (!api) throw std::runtime_error("CUDA is unavailable: " + why);
  const GpuDims& d = o.dims;
  if (d.hidden <= 0 || d.n_heads <= 0 || d.n_kv_heads <= 0 || d.head_dim <= 0 || d.ubatch <= 0 || d.vocab <= 0 ||
      o.n_seq <= 0 || o.ctx <= 0 || d.top_k < 0 || d.n_experts < 0 || d.ffn < 0) {
    throw std::invalid_argument("gpuContextCreate: every size must be positive");
  }
  if (o.kv_type != MXC_F16 && o.kv_type != MXC_BF16) {
    throw std::invalid_argument("gpuContextCreate: the GPU KV cache holds f16 or bf16");
  }
  auto g = std::make_shared<GpuContext>();
  g->api = api;
  g->device = o.device;
  g->dims = d;
  g->bind();
  g->ok(api->mxc_stream_create(&g->stream), "mxc_stream_create");
  g->ok(api->mxc_blas_create(&g->blas, g->stream), "mxc_blas_create");
  g->ok(api->mxc_event_create(&g->sync_event, 0), "mxc_event_create");
  g->x_fence.init(api);
  g->meta_fence.init(api);

  const int64_t ub = d.ubatch, h = d.hidden;
  const size_t f4 = 4;
  const int64_t widest = std::max({h, d.q_dim(), d.ffn});
  g->x = g->alloc(size_t(ub * h) * f4, "hidden state");
  g->tmp = g->alloc(size_t(ub * h) * f4, "block output");
  g->xb = g->alloc(size_t(ub * widest) * 2, "bf16 GEMM input");
  g->qkv = g->alloc(size_t(ub * (d.q_dim() + 2 * d.kv_dim())) * f4, "q/k/v");
  g->att = g->alloc(size_t(ub * d.q_dim()) * f4, "attention output");
  if (d.n_experts > 0) {
    g->router_logits = g->alloc(size_t(ub * d.n_experts) * f4, "router logits");
    const size_t route = size_t(ub * (h + 2 * d.top_k)) * 4;
    g->route = g->alloc(route, "MoE routing");
    g->h_route = PinnedBuffer(api, route, "pinned MoE routing");
  }
  if (d.ffn > 0) g->gate_up = g->alloc(size_t(ub * 2 * d.ffn) * f4, "gate/up");
  g->meta = g->alloc(size_t(6 * ub) * 4, "batch positions");
  const int64_t lr = std::min(ub, GpuContext::LOGIT_ROWS);
  g->sel = g->alloc(size_t(lr * h) * f4, "lm_head rows");
  g->logits = g->alloc(size_t(lr * d.vocab) * f4, "logits");
  g->h_x = PinnedBuffer(api, size_t(ub * h) * f4, "pinned hidden state");
  g->h_y = PinnedBuffer(api, size_t(ub * h) * f4, "pinned experts output");
  g->h_meta = PinnedBuffer(api, size_t(6 * ub) * 4, "pinned batch positions");
  g->h_logits = PinnedBuffer(api, size_t(lr * d.vocab) * f4, "pinned logits");
  alloc_kv(*g, o);
  g->decode_workspace(api->mxc_attention_decode_workspace_bytes(o.n_seq, d.n_heads, d.head_dim, o.ctx));
  return g;
}

// Runs of consecutive tokens of one sequence at consecutive positions; one-token runs next to each
// other form one decode group.
static void plan_batch(BatchPlan& p, const int32_t* pos, const int32_t* seq, int64_t n) {
  p.n = n;
  p.runs.clear();
  p.decode.clear();
  p.prefill = false;
  for (int64_t i = 0; i < n;) {
    int64_t j = i + 1;
    while (j < n && seq[j] == seq[i] && pos[j] == pos[j - 1] + 1) ++j;
    p.runs.push_back(AttentionRun{seq[i], i, j - i, pos[i]});
    if (j - i > 1) p.prefill = true;
    i = j;
  }
  for (size_t r = 0; r < p.runs.size();) {
    if (p.runs[r].count > 1) {
      ++r;
      continue;
    }
    DecodeGroup gr{p.runs[r].first, 0, 0};
    while (r < p.runs.size() && p.runs[r].count == 1) {
      gr.count++;
      gr.max_len = std::max<int64_t>(gr.max_len, p.runs[r].pos0 + 1);
      ++r;
    }
    p.decode.push_back(gr);
  }
  // A token that is alone in its run but whose sequence has other tokens in the batch still needs
  // only its own row of the cache: the decode call sees positions [0, pos + 1).
}

void gpu_batch_begin(GpuContext& g, const int32_t* pos, const int32_t* seq, int64_t n) {
  if (n <= 0 || n > g.dims.ubatch) {
    throw std::invalid_argument("gpuBatchBegin: " + std::to_string(n) + " tokens, the GPU buffers hold 1 to " +
                                std::to_string(g.dims.ubatch));
  }
  g.bind();
  deferred_experts_drop(g);  // the last ubatch's final held-back part had no reader (no logits asked)
  profile_reset(g);
  plan_batch(g.plan, pos, seq, n);
  const int64_t ub = g.dims.ubatch;
  g.meta_fence.wait();
  int32_t* h = g.h_meta.as<int32_t>();
  std::memcpy(h, pos, size_t(n) * 4);
  std::memcpy(h + ub, seq, size_t(n) * 4);
  // Decode arrays: seq ids and lengths (pos + 1) of the one-token runs, in batch order (a decode group
  // is a contiguous stretch of the batch, so its slice of these arrays starts at its first token).
  for (int64_t i = 0; i < n; ++i) {
    h[2 * ub + i] = seq[i];
    h[3 * ub + i] = pos[i] + 1;
  }
  int32_t* d = g.meta.as<int32_t>();
  for (int k = 0; k < 4; ++k) {
    g.ok(g.api->mxc_memcpy_h2d(d + k * ub, h + k * ub, size_t(n) * 4, g.stream), "upload batch positions");
  }
  g.meta_fence.record(g.stream);
  g.counters.forwards++;
  g.counters.h2d_bytes += uint64_t(n) * 16;
}

void gpu_hidden_to_device(GpuContext& g, const float* x, int64_t n) {
  g.bind();
  const size_t bytes = size_t(n * g.dims.hidden) * 4;
  g.x_fence.wait();
  std::memcpy(g.h_x.as(), x, bytes);
  g.ok(g.api->mxc_memcpy_h2d(g.x.as(), g.h_x.as(), bytes, g.stream), "hidden state to the GPU");
  g.x_fence.record(g.stream);
  g.counters.h2d_bytes += bytes;
}

void gpu_hidden_to_host(GpuContext& g, float* x, int64_t n) {
  g.bind();
  deferred_experts_join(g);
  const size_t bytes = size_t(n * g.dims.hidden) * 4;
  g.x_fence.wait();
  g.ok(g.api->mxc_memcpy_d2h(g.h_x.as(), g.x.as(), bytes, g.stream), "hidden state to the host");
  g.sync();
  std::memcpy(x, g.h_x.as(), bytes);
  g.counters.d2h_bytes += bytes;
}

void gpu_kv_copy(GpuContext& g, int src, int dst, int64_t n_tokens) {
  if (src < 0 || dst < 0 || src >= g.kv.n_seq || dst >= g.kv.n_seq || n_tokens < 0 || n_tokens > g.kv.capacity) {
    throw std::invalid_argument("gpuKvCopy: slots or token count out of range");
  }
  if (src == dst || n_tokens == 0) return;
  g.bind();
  for (const mxc_kv_layer& l : g.kv.layers) {
    if (!l.k) continue;
    const size_t row = size_t(l.kv_heads) * size_t(l.head_dim) * 2;
    const size_t s = size_t(src) * size_t(l.capacity) * row, d = size_t(dst) * size_t(l.capacity) * row;
    const size_t bytes = size_t(n_tokens) * row;
    g.ok(g.api->mxc_memcpy_d2d(static_cast<char*>(l.k) + d, static_cast<char*>(l.k) + s, bytes, g.stream), "KV copy");
    g.ok(g.api->mxc_memcpy_d2d(static_cast<char*>(l.v) + d, static_cast<char*>(l.v) + s, bytes, g.stream), "KV copy");
  }
}

}  // namespace mixtile::gpu
