// The hybrid forward's prefill experts on the GPU; see gpu-experts-bridge.h.
#include "gpu/gpu-experts-bridge.h"

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "gpu/gpu-experts-prefetch.h"
#include "gpu/gpu-experts-split.h"

namespace mixtile::gpu {

namespace {

std::atomic<uint64_t> g_queued{0}, g_used{0}, g_bank_bytes{0};

int64_t env_int(const char* name, int64_t fallback) {
  const char* e = std::getenv(name);
  return e && *e ? std::atoll(e) : fallback;
}

// Both prefetch banks together: none unless MIXTILE_GPU_EXPERTS_PREFETCH is set and not 0 (off by default:
// no gain measured yet, bench/RESULTS.md "GPU experts (prefill)"); MIXTILE_GPU_EXPERTS_PREFETCH_MIB caps
// them; else each holds a whole layer (src/model/gpu-plan.ts counts the same for the fit check).
size_t prefetch_budget() {
  if (env_int("MIXTILE_GPU_EXPERTS_PREFETCH", 0) == 0) return 0;
  const int64_t mib = env_int("MIXTILE_GPU_EXPERTS_PREFETCH_MIB", -1);
  return mib < 0 ? SIZE_MAX : size_t(mib) << 20;
}

}  // namespace

// Per context: its own stream and cuBLAS handle (so it depends on nothing of the context's but the
// device), the split runner with its measured cost model, each layer's pinned weights, and the prefetch
// of the next layer's experts (read from the environment when the context first runs GPU experts).
struct ExpertsGpuState {
  GpuExperts gpu;
  ExpertsSplitRunner split;
  ExpertsPrefetch prefetch;
  int64_t prefetch_min_tokens;
  std::map<const ExpertsWeights*, std::unique_ptr<GpuExpertWeights>> layers;
  std::map<int, const GpuExpertWeights*> by_index;  // layer index -> its weights, as layers are first run
  mxc_event* done = nullptr;  // recorded on gpu's stream after y; the context's stream waits for it

  ExpertsGpuState(const CudaApi& api, int device)
      : gpu(api, device),
        split(gpu),
        prefetch(gpu, prefetch_budget()),
        prefetch_min_tokens(env_int("MIXTILE_GPU_EXPERTS_PREFETCH_MIN_TOKENS", 128)) {
    check(api, api.mxc_event_create(&done, 0), "mxc_event_create");
  }
  ~ExpertsGpuState() {
    // A prefetch may still copy from the weights that `layers` unpins below.
    gpu.api().mxc_stream_sync(gpu.copy_stream());
    gpu.api().mxc_stream_sync(gpu.compute_stream());
    gpu.api().mxc_event_destroy(done);
  }
};

ExpertsSplitStats experts_split_stats(GpuContext& g) {
  ExpertsSplitStats s;
  if (!g.experts_gpu) return s;
  s.used = true;
  s.totals = g.experts_gpu->split.totals();
  s.cost = g.experts_gpu->split.cost_in_use();
  return s;
}

PrefetchCounters prefetch_counters() { return PrefetchCounters{g_queued.load(), g_used.load(), g_bank_bytes.load()}; }

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

namespace {

// The layer's pinned weights, made (pinned) on first use; the state with its streams likewise.
GpuExpertWeights& layer_weights(GpuContext& g, const ExpertsWeights& experts, int layer_index) {
  if (!g.experts_gpu) g.experts_gpu = std::make_shared<ExpertsGpuState>(*g.api, g.device);
  ExpertsGpuState& st = *g.experts_gpu;
  std::unique_ptr<GpuExpertWeights>& layer = st.layers[&experts];
  if (!layer) layer = std::make_unique<GpuExpertWeights>(*g.api, experts.gate, experts.up, experts.down);
  st.by_index[layer_index] = layer.get();
  return *layer;
}

}  // namespace

void prepare_gpu_experts(GpuContext& g, const ExpertsWeights& experts, int layer_index) {
  if (placement_from_env() == ExpertsPlacement::cpu) return;
  layer_weights(g, experts, layer_index);
}

void run_gpu_experts(GpuContext& g, const ExpertsWeights& experts, const ExpertsBridgeArgs& a, const float* x,
                     const int32_t* ids, const float* weights) {
  GpuExpertWeights* const layer = &layer_weights(g, experts, a.layer);
  ExpertsGpuState& st = *g.experts_gpu;
  // A batch this large gives the GPU (nearly) every expert of every layer: once this layer's copies are
  // queued, queue the next layer's (known from an earlier forward) behind them, as many experts as the
  // cost model gives the GPU here with none prefetched.
  const auto next = st.by_index.find(a.layer + 1);
  const GpuExpertWeights* next_w = next != st.by_index.end() ? next->second : nullptr;
  uint64_t queued_bytes = 0;
  std::function<void(int)> prefetch_next;
  if (next_w && a.n >= st.prefetch_min_tokens) {
    prefetch_next = [&](int gpu_alone) {
      const int64_t q = st.prefetch.start(*next_w, gpu_alone, layer);
      g_queued += uint64_t(q);
      g_bank_bytes = st.prefetch.device_bytes();
      queued_bytes = uint64_t(q) * next_w->expert_bytes();
    };
  }
  // a.xn is complete: the caller synchronised the context's stream before reading x on the host.
  const ExpertsSplitResult r = st.split.forward(*layer, experts, x, a.xn, a.n, ids, weights, a.top_k, placement_from_env(),
                                                nullptr, a.y, st.prefetch.resident(*layer), prefetch_next);
  g_used += uint64_t(r.gpu.resident);
  g.counters.h2d_bytes += queued_bytes;
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
