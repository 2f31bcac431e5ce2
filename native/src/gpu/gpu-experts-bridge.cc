// The hybrid forward's prefill experts on the GPU; see gpu-experts-bridge.h.
#include "gpu/gpu-experts-bridge.h"

#include <cstdlib>
#include <map>
#include <memory>
#include <string>

#include "gpu/gpu-experts-split.h"

namespace mixtile::gpu {

// Per context: its own stream and cuBLAS handle (so it depends on nothing of the context's but the
// device), the split runner with its measured cost model, and each layer's pinned weights.
struct ExpertsGpuState {
  GpuExperts gpu;
  ExpertsSplitRunner split;
  std::map<const ExpertsWeights*, std::unique_ptr<GpuExpertWeights>> layers;
  mxc_event* done = nullptr;  // recorded on gpu's stream after y; the context's stream waits for it

  ExpertsGpuState(const CudaApi& api, int device) : gpu(api, device), split(gpu) {
    check(api, api.mxc_event_create(&done, 0), "mxc_event_create");
  }
  ~ExpertsGpuState() {
    gpu.api().mxc_stream_sync(gpu.compute_stream());
    gpu.api().mxc_event_destroy(done);
  }
};

namespace {

ExpertsPlacement placement_from_env() {
  static const ExpertsPlacement p = [] {
    const char* e = std::getenv("MIXTILE_EXPERTS_PREFILL");
    return e && *e ? parse_placement(e) : ExpertsPlacement::split;
  }();
  return p;
}

int64_t min_tokens() {
  static const int64_t m = [] {
    const char* e = std::getenv("MIXTILE_GPU_EXPERTS_MIN_TOKENS");
    return e && *e ? std::max<int64_t>(1, std::atoll(e)) : int64_t(8);
  }();
  return m;
}

}  // namespace

bool gpu_experts_wanted(const ExpertsBridgeArgs& a) {
  return a.prefill && a.prefill_on_gpu && a.n >= min_tokens() && placement_from_env() != ExpertsPlacement::cpu;
}

void run_gpu_experts(GpuContext& g, const ExpertsWeights& experts, const ExpertsBridgeArgs& a, const float* x,
                     const int32_t* ids, const float* weights) {
  if (!g.experts_gpu) g.experts_gpu = std::make_shared<ExpertsGpuState>(*g.api, g.device);
  ExpertsGpuState& st = *g.experts_gpu;
  std::unique_ptr<GpuExpertWeights>& layer = st.layers[&experts];
  if (!layer) layer = std::make_unique<GpuExpertWeights>(*g.api, experts.gate, experts.up, experts.down);
  // a.xn is complete: the caller synchronised the context's stream before reading x on the host.
  const ExpertsSplitResult r =
      st.split.forward(*layer, experts, x, a.xn, a.n, ids, weights, a.top_k, placement_from_env(), nullptr, a.y);
  g.ok(g.api->mxc_event_record(st.done, st.gpu.compute_stream()), "mxc_event_record");
  g.ok(g.api->mxc_stream_wait_event(g.stream, st.done), "mxc_stream_wait_event");
  const size_t yb = size_t(a.n * experts.hidden) * 4;
  if (r.plan.gpu_experts > 0) g.counters.experts_gpu_tokens += uint64_t(a.n);
  if (r.plan.cpu_experts > 0) {
    g.counters.experts_cpu_tokens += uint64_t(a.n);
    g.counters.h2d_bytes += yb;
  }
  g.counters.h2d_bytes += uint64_t(r.gpu.bytes);
}

}  // namespace mixtile::gpu
