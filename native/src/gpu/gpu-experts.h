// Routed experts computed on the GPU from expert weights that stay in host RAM (prefill, issue 9
// item 6). Each selected expert's raw (quantized) bytes are streamed over PCIe into a ring of device
// slots on a copy stream while the compute stream dequantizes the previous expert to BF16 and runs
// its GEMMs (cuBLAS), so the copy engine never waits for the SMs; only experts that have tokens are
// streamed. The tokens come from a device f32 matrix, the routing from the host.
//
// GpuExpertWeights: one layer's stacked gate/up/down tensors (host memory: the mmapped file or a
//   native buffer), pinned in place with mxc_host_register where the driver allows it; otherwise
//   (refused, or MIXTILE_GPU_EXPERTS_PIN=0) the bytes go through a pinned staging ring that the
//   calling thread fills.
// GpuExperts: the streams, cuBLAS handle, ring and scratch one compute stream needs; shared by all
//   layers; not thread-safe (one forward at a time).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cuda-loader.h"
#include "tensor.h"

namespace mixtile {

class GpuExpertWeights {
 public:
  // gate, up: ne {hidden, ffn, n_expert}; down: ne {ffn, hidden, n_expert}; types F32 F16 BF16 Q8_0
  // Q4_K Q5_K Q6_K. Throws std::invalid_argument on shapes/types, std::runtime_error on CUDA errors.
  GpuExpertWeights(const CudaApi& api, const Weight& gate, const Weight& up, const Weight& down);
  ~GpuExpertWeights();
  GpuExpertWeights(const GpuExpertWeights&) = delete;
  GpuExpertWeights& operator=(const GpuExpertWeights&) = delete;

  int64_t n_expert() const { return n_expert_; }
  int64_t hidden() const { return hidden_; }
  int64_t ffn() const { return ffn_; }
  // Raw bytes streamed for one expert (gate + up + down slices).
  size_t expert_bytes() const { return gate_.matrix_bytes() + up_.matrix_bytes() + down_.matrix_bytes(); }
  // True when the host bytes are pinned in place (direct DMA); false: staged through pinned buffers.
  bool pinned() const { return pinned_; }
  // Why the weights are not pinned ("" when they are).
  const std::string& unpinned_reason() const { return unpinned_reason_; }
  const Weight& gate() const { return gate_; }
  const Weight& up() const { return up_; }
  const Weight& down() const { return down_; }

 private:
  friend class GpuExperts;
  const CudaApi& api_;
  Weight gate_, up_, down_;
  int64_t n_expert_, hidden_, ffn_;
  bool pinned_ = false;
  std::string unpinned_reason_;
  // Pinned pieces of the process-wide registry this object holds, [begin, end) sorted by begin. A
  // copy must not span two registrations (the driver rejects it): copy_pieces splits at their edges.
  std::vector<std::pair<uintptr_t, uintptr_t>> held_, pieces_;
  // A tensor's bytes outside whole pinned pages (its partly shared first and last pages), copied once
  // into pinned memory at construction so that every copy stays asynchronous (a pageable source may make
  // the driver wait for the stream). Sorted by begin.
  struct Edge {
    uintptr_t begin, end;
    const uint8_t* pinned;
  };
  std::vector<Edge> edges_;
  void* edge_mem_ = nullptr;
};

// Experts [0, count) of one layer already copied (or being copied) to VRAM ahead of its forward (a
// prefetch bank, gpu-experts-prefetch.h): expert e's raw slices at gate + e * gate().matrix_bytes(), and
// likewise up and down. Expert e may be read on the compute stream once it has waited for
// ready[e / chunk] (recorded on the copy stream after that chunk's copies); the forward records `done`
// on the compute stream after its last read, and the next fill of the bank waits for it.
struct ResidentExperts {
  const GpuExpertWeights* w = nullptr;
  int64_t count = 0;
  const uint8_t *gate = nullptr, *up = nullptr, *down = nullptr;
  int64_t chunk = 1;
  std::vector<mxc_event*> ready;
  mxc_event* done = nullptr;
  bool has(const GpuExpertWeights& x, int64_t e) const { return w == &x && e < count; }
};

// What one forward did (for the cost model and benches).
struct GpuExpertsRun {
  int experts = 0;        // experts computed (streamed + resident)
  int resident = 0;       // of which read from a prefetch bank (not streamed by this call)
  int64_t rows = 0;       // (token, slot) pairs computed
  double bytes = 0;       // weight bytes streamed by this call
};

class GpuExperts {
 public:
  // Experts with consecutive ids share one copy per tensor, up to this many: H2D reaches 47.8 GB/s in
  // 1 MiB copies and 52.9 GB/s in 4 MiB ones on the H100 machine (bench/RESULTS.md), and one Qwen3-30B-A3B
  // Q4_K expert is 0.9 + 0.9 + 1.3 MB.
  static constexpr int64_t GROUP = 4;

  // compute: the stream the caller's work is ordered on (x in, y out); blas: a handle for it (its
  // stream is set to `compute` at each forward). Either may be null: an own one is created.
  GpuExperts(const CudaApi& api, int device, mxc_stream* compute = nullptr, mxc_blas* blas = nullptr,
             int ring_slots = 3);
  ~GpuExperts();
  GpuExperts(const GpuExperts&) = delete;
  GpuExperts& operator=(const GpuExperts&) = delete;

  // Enqueues on the compute stream: y_dev[t] = (accumulate ? y_dev[t] : 0) + sum over slots j of token t
  // whose expert e = ids[t][j] has gpu_mask[e] != 0 (all experts when gpu_mask is null) of
  // weights[t][j] * down_e(SiLU(gate_e x) * up_e x), x = x_dev[t] (f32 [n][hidden] on the device).
  // ids/weights: host [n][top_k]. Experts that `resident` holds for w are read from there (computed
  // first, while the others stream in); the rest stream through the ring. Returns once everything is
  // enqueued (the staging fallback returns after its last host copy). Throws std::invalid_argument on
  // bad ids, std::runtime_error on CUDA errors.
  GpuExpertsRun forward(const GpuExpertWeights& w, const float* x_dev, int64_t n, const int32_t* ids,
                        const float* weights, int top_k, const uint8_t* gpu_mask, float* y_dev, bool accumulate,
                        const ResidentExperts* resident = nullptr);

  const CudaApi& api() const { return api_; }
  mxc_stream* compute_stream() const { return compute_; }
  // The stream every weight copy is ordered on (the ring's and a prefetch's).
  mxc_stream* copy_stream() const { return copy_; }
  // Enqueues on the copy stream a copy of `bytes` of w's pinned weights at src (inside gate, up or down)
  // to dst, split where the pinned registrations end. Requires w.pinned().
  void copy_weights(const GpuExpertWeights& w, uint8_t* dst, const uint8_t* src, size_t bytes);
  int device() const { return device_; }
  // Milliseconds between the start and the end of the last forward on the GPU (waits for it).
  double last_forward_ms();
  // Host-to-device GB/s of `bytes` copied from expert weights of `w` (pinned or staged, as forward
  // copies them); for the cost model.
  double measure_h2d_gbps(const GpuExpertWeights& w, size_t bytes);
  // Seconds of GPU time for one expert at `rows` tokens (dequant + GEMMs, weights already on the
  // device; median of 3); for the cost model.
  double measure_expert_s(const GpuExpertWeights& w, int64_t rows);

 private:
  struct Buf {
    void* p = nullptr;
    size_t bytes = 0;
  };
  void grow(Buf& b, size_t bytes);           // device, grow-only
  void grow_host(Buf& b, size_t bytes);      // pinned host, grow-only
  void check(mxc_status st, const char* what) const;
  // Copy stream: experts [e0, e0 + count) (consecutive ids, count <= GROUP) into ring slot `slot`.
  void stream_group(const GpuExpertWeights& w, int64_t e0, int64_t count, int slot);
  // Compute stream: one expert from its raw gate/up/down slices in VRAM; `release` (if any) is recorded
  // once the slices have been dequantized (the bytes may then be overwritten).
  void compute_expert(const GpuExpertWeights& w, const uint8_t* gate, const uint8_t* up, const uint8_t* down,
                      mxc_event* release, int64_t p0, int64_t rows);
  // Expert `i` of the group in ring slot `slot` (see slot_bytes for the layout).
  const uint8_t* ring_part(const GpuExpertWeights& w, int slot, int part, int64_t i) const;
  static size_t slot_bytes(const GpuExpertWeights& w);

  const CudaApi& api_;
  int device_;
  mxc_stream* compute_ = nullptr;
  mxc_stream* copy_ = nullptr;
  mxc_blas* blas_ = nullptr;
  bool own_compute_ = false, own_blas_ = false;
  int slots_;
  std::vector<Buf> ring_, stage_;                 // device raw slots; pinned host staging slots
  std::vector<mxc_event*> copied_, consumed_;     // per slot: H2D done; dequant done (slot free)
  mxc_event *meta_done_ = nullptr, *t0_ = nullptr, *t1_ = nullptr;
  bool timed_ = false;
  Buf meta_host_, meta_dev_, xg_, o_, gu_, h_, wgu_, wd_;
};

}  // namespace mixtile
