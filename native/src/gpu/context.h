// The GPU side of one loaded model: device binding, a compute stream, a cuBLAS handle, the activation
// buffers of one ubatch in VRAM (the hidden state x lives here across layers), pinned host staging for
// the few host <-> device hops per layer, the KV cache in VRAM, and the attention plan of the current
// ubatch. Every GPU call goes through the dlopened table cuda_api() (no CUDA headers here).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cuda-loader.h"

namespace mixtile::gpu {

// Throws std::runtime_error("<what>: <the library's message>") when st is not MXC_OK.
void check(const CudaApi& api, mxc_status st, const char* what);

// Device memory, freed on destruction (move-only).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const CudaApi* api, int device, size_t bytes, const char* what);
  ~DeviceBuffer() { reset(); }
  void reset();
  DeviceBuffer(DeviceBuffer&& o) noexcept { *this = std::move(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  template <class T = void>
  T* as() const { return static_cast<T*>(p_); }
  size_t bytes() const { return bytes_; }

 private:
  const CudaApi* api_ = nullptr;
  int device_ = 0;
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

// Pinned (page-locked) host memory, for asynchronous copies (move-only).
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  PinnedBuffer(const CudaApi* api, size_t bytes, const char* what);
  ~PinnedBuffer() { reset(); }
  void reset();
  PinnedBuffer(PinnedBuffer&& o) noexcept { *this = std::move(o); }
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  template <class T = void>
  T* as() const { return static_cast<T*>(p_); }
  size_t bytes() const { return bytes_; }

 private:
  const CudaApi* api_ = nullptr;
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

// An event the host waits on before it rewrites a pinned buffer an asynchronous copy may still read.
class HostFence {
 public:
  void init(const CudaApi* api);
  ~HostFence();
  void record(mxc_stream* s);  // after the last async copy that reads/writes the buffer
  void wait();                 // before the host touches the buffer again
 private:
  const CudaApi* api_ = nullptr;
  mxc_event* e_ = nullptr;
  bool pending_ = false;
};

// The model shape the ubatch buffers are sized for.
struct GpuDims {
  int64_t hidden = 0;
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
  int n_experts = 0, top_k = 0;  // 0 for dense models
  int64_t ffn = 0;               // dense MLP width (0 for MoE)
  int64_t vocab = 0;
  int64_t ubatch = 0;            // most tokens per forward step
  int64_t q_dim() const { return int64_t(n_heads) * head_dim; }
  int64_t kv_dim() const { return int64_t(n_kv_heads) * head_dim; }
};

// KV cache in VRAM: one mxc_kv_layer per model layer whose attention runs on the GPU (k == nullptr else).
struct GpuKv {
  std::vector<mxc_kv_layer> layers;
  std::vector<DeviceBuffer> storage;
  int n_seq = 0;
  int64_t capacity = 0;
  size_t bytes = 0;
};

// Tokens of the current ubatch, grouped for the attention kernels. A run is consecutive batch tokens of
// one sequence at consecutive positions; runs of one token form decode groups (one batched call).
struct AttentionRun {
  int seq = 0;
  int64_t first = 0, count = 0, pos0 = 0;
};
struct DecodeGroup {
  int64_t first = 0, count = 0, max_len = 0;
};
struct BatchPlan {
  int64_t n = 0;
  std::vector<AttentionRun> runs;          // every run (KV stores); count > 1 are prefill runs
  std::vector<DecodeGroup> decode;         // stretches of one-token runs, in batch order
  bool prefill = false;                    // some sequence has several tokens in this ubatch
};

// What ran where (the engine test reads these to prove the hybrid path was taken).
struct GpuCounters {
  uint64_t forwards = 0, attention = 0, moe = 0, mlp = 0, lm_head_rows = 0, embed_tokens = 0;
  uint64_t experts_cpu_tokens = 0, experts_gpu_tokens = 0;
  uint64_t h2d_bytes = 0, d2h_bytes = 0;
  // Host time (ns): issuing the attention blocks; waiting for the GPU before the experts (about the GPU
  // time of norm + attention + router when issuing is quick); the CPU experts; the output head (with its wait).
  uint64_t attention_issue_ns = 0, experts_wait_ns = 0, experts_cpu_ns = 0, lm_head_ns = 0;
  // Decode steps' held-back experts (deferred-experts.h): parts held, and the CPU time computing them.
  uint64_t experts_deferred = 0, experts_deferred_ns = 0;
  // MIXTILE_GPU_PROFILE=1 (decode-profile.h): GPU microseconds of each part of decode steps' MoE layers.
  uint64_t profile_layers = 0;
  double profile_attention_us = 0, profile_route_us = 0, profile_d2h_us = 0, profile_h2d_add_us = 0, profile_issue_gap_us = 0;
  uint64_t graphs_captured = 0, graph_launches = 0, graph_capture_failures = 0;
};

// Nanoseconds on a monotonic clock, for the counters above.
uint64_t now_ns();

struct GpuContext {
  const CudaApi* api = nullptr;
  int device = 0;
  GpuDims dims;
  mxc_stream* stream = nullptr;
  mxc_blas* blas = nullptr;
  mxc_event* sync_event = nullptr;
  GpuCounters counters;

  // Activations of one ubatch (device). x is the residual stream [ub][hidden] f32.
  DeviceBuffer x, tmp;         // f32 [ub][hidden]
  DeviceBuffer xb;             // bf16 [ub][max(hidden, q_dim, ffn)]: GEMM inputs
  DeviceBuffer qkv;            // f32: q [ub][q_dim], k, v [ub][kv_dim]
  DeviceBuffer att;            // f32 [ub][q_dim]
  DeviceBuffer router_logits;  // f32 [ub][n_experts]
  // MoE routing of n tokens, packed so one copy takes it to the host: the normed hidden state
  // f32 [n][hidden], then expert ids int32 [n][top_k], then their weights f32 [n][top_k].
  DeviceBuffer route;
  DeviceBuffer gate_up;        // f32 [ub][2 * ffn] (dense MLP)
  DeviceBuffer meta;           // int32: pos, seq, decode seq ids, decode lens, tokens, rows [ub] each
  DeviceBuffer sel;            // f32 [LOGIT_ROWS][hidden]: lm_head rows
  DeviceBuffer logits;         // f32 [LOGIT_ROWS][vocab]
  DeviceBuffer decode_ws;      // attention decode split-K workspace (grows on demand)
  DeviceBuffer weight_scratch; // bf16: a quantized GPU weight dequantized for a batched GEMM (gpu/linear.h)
  uint64_t decode_ws_generation = 0;  // bumped when decode_ws moves: graphs that baked it are stale

  // Pinned staging (host).
  PinnedBuffer h_x, h_y;       // f32 [ub][hidden]
  PinnedBuffer h_route;        // as route
  PinnedBuffer h_meta;         // int32 [6][ub] (as meta)
  PinnedBuffer h_logits;       // f32 [LOGIT_ROWS][vocab]
  HostFence x_fence, meta_fence;

  GpuKv kv;
  BatchPlan plan;
  std::shared_ptr<struct UploadStaging> upload;  // weight staging while loading (weights-upload.cc)
  std::shared_ptr<struct ExpertsGpuState> experts_gpu;  // prefill experts on the GPU (gpu-experts-bridge.cc)
  std::shared_ptr<struct DeferredExperts> deferred;     // decode experts held back a layer (deferred-experts.h)
  std::shared_ptr<struct DecodeProfile> profile;        // MIXTILE_GPU_PROFILE timing events (decode-profile.h)

  static constexpr int64_t LOGIT_ROWS = 16;  // lm_head rows per pass (bounds the logits buffers)

  // Offsets of the int32 arrays inside meta / h_meta, in elements.
  int32_t* d_pos() const { return meta.as<int32_t>(); }
  int32_t* d_seq() const { return meta.as<int32_t>() + dims.ubatch; }
  int32_t* d_dec_seq() const { return meta.as<int32_t>() + 2 * dims.ubatch; }
  int32_t* d_dec_len() const { return meta.as<int32_t>() + 3 * dims.ubatch; }
  int32_t* d_tokens() const { return meta.as<int32_t>() + 4 * dims.ubatch; }
  int32_t* d_rows() const { return meta.as<int32_t>() + 5 * dims.ubatch; }

  ~GpuContext();
  void ok(mxc_status st, const char* what) const { check(*api, st, what); }
  // Binds the calling thread to this context's device (cheap; every entry point calls it).
  void bind() const;
  DeviceBuffer alloc(size_t bytes, const char* what) const { return DeviceBuffer(api, device, bytes, what); }
  // Waits for everything issued on the stream (an event, so only this stream).
  void sync();
  // Grows the decode workspace to at least `bytes` (syncs first when it must reallocate).
  void* decode_workspace(size_t bytes);
};

struct GpuContextOptions {
  int device = 0;
  GpuDims dims;
  // KV cache: element type (MXC_F16 / MXC_BF16), slots, positions per slot, and which layers have
  // their attention on the GPU (empty = none).
  mxc_dtype kv_type = MXC_F16;
  int n_seq = 1;
  int64_t ctx = 0;
  std::vector<bool> kv_layers;
};

// Loads the library (std::runtime_error with why when unavailable), binds the device, creates the stream,
// cuBLAS handle, buffers and the KV cache. Throws with the library's message (e.g. out of memory).
std::shared_ptr<GpuContext> gpu_context_create(const GpuContextOptions& o);

// Uploads positions/seq ids [n] of the next ubatch and plans its attention calls. Callers checked
// 0 <= seq < n_seq, pos < ctx, n <= ubatch.
void gpu_batch_begin(GpuContext& g, const int32_t* pos, const int32_t* seq, int64_t n);

// The residual stream between host and device: x [n][hidden] f32.
void gpu_hidden_to_device(GpuContext& g, const float* x, int64_t n);
void gpu_hidden_to_host(GpuContext& g, float* x, int64_t n);

// Copies positions [0, n_tokens) of every GPU layer from slot src to slot dst (prefix sharing).
void gpu_kv_copy(GpuContext& g, int src, int dst, int64_t n_tokens);

}  // namespace mixtile::gpu
