// Routed experts for a GPU forward; see experts-bridge.h.
#include "gpu/experts-bridge.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "gpu/decode-profile.h"
#include "gpu/gpu-experts-bridge.h"

namespace mixtile::gpu {

// CPU path: the normed hidden state and the routing come down to pinned memory (one async copy when
// they are packed as GpuContext::route packs them, or none when the route kernel wrote them there, then
// one wait), the CPU kernels run with the precomputed routing, and the sum goes back up (async, or read in
// place by the residual add; the next layer's kernels follow it on the same stream). The pinned buffers are
// rewritten only after the next wait, so no copy or mapped read can overtake another.
DecodeGlue decode_glue(const GpuDims& d) {
  if (d.hidden > 8192) return DecodeGlue::copy;
  const char* e = std::getenv("MIXTILE_DECODE_GLUE");
  if (!e || !*e || std::strcmp(e, "wait") == 0) return DecodeGlue::wait;
  if (std::strcmp(e, "mapped") == 0) return DecodeGlue::mapped;
  if (std::strcmp(e, "fused") == 0) return DecodeGlue::fused;
  if (std::strcmp(e, "copy") == 0) return DecodeGlue::copy;
  throw std::invalid_argument(std::string("MIXTILE_DECODE_GLUE: '") + e + "' is not mapped, wait, fused or copy");
}

const char* decode_glue_name(DecodeGlue glue) {
  switch (glue) {
    case DecodeGlue::mapped: return "mapped";
    case DecodeGlue::wait: return "wait";
    case DecodeGlue::fused: return "fused";
    case DecodeGlue::copy: break;
  }
  return "copy";
}

// Glue wait: the queued add polls the flag, so the host must set it on every path, an exception's too (the sum
// may then be garbage, but the forward fails anyway and the stream moves on).
namespace {
struct FlagRelease {
  uint32_t* flag = nullptr;
  uint64_t released_ns = 0;
  void release() {
    if (!flag) return;
    std::atomic_thread_fence(std::memory_order_release);  // h_y's stores first (x86: in order anyway)
    reinterpret_cast<volatile uint32_t*>(flag)[0] = 1u;
    released_ns = now_ns();
    flag = nullptr;
  }
  ~FlagRelease() { release(); }
};

void queue_add_when_ready(GpuContext& g, const ExpertsBridgeArgs& a, int64_t len) {
  g.ok(g.api->mxc_add_when_ready(a.x, g.h_y.as<float>(), len, a.ready_flag, g.stream), "MoE residual add (queued)");
  profile_mark(g, ProfileMark::add_end);
}
}  // namespace

const float* run_routed_experts(GpuContext& g, const ExpertsWeights& experts, const ExpertsBridgeArgs& a) {
  const CudaApi& api = *g.api;
  const size_t xb = size_t(a.n * experts.hidden) * 4, rb = size_t(a.n * a.top_k) * 4;
  auto* hx = g.h_route.as<float>();
  auto* hids = reinterpret_cast<int32_t*>(hx + a.n * experts.hidden);
  auto* hw = reinterpret_cast<float*>(hids + a.n * a.top_k);
  if (a.mapped && (a.xn != hx || a.ids != hids || a.weights != hw)) {
    throw std::logic_error("experts bridge: mapped routing must be the pinned h_route, packed");
  }
  const bool packed = reinterpret_cast<const char*>(a.ids) == reinterpret_cast<const char*>(a.xn) + xb &&
                      reinterpret_cast<const char*>(a.weights) == reinterpret_cast<const char*>(a.ids) + rb;
  if (a.mapped) {
    // The route kernel wrote it there; the wait below makes its writes visible.
  } else if (packed) {
    g.ok(api.mxc_memcpy_d2h(hx, a.xn, xb + 2 * rb, g.stream), "experts input to the host");
  } else {
    g.ok(api.mxc_memcpy_d2h(hx, a.xn, xb, g.stream), "experts input to the host");
    g.ok(api.mxc_memcpy_d2h(hids, a.ids, rb, g.stream), "expert ids to the host");
    g.ok(api.mxc_memcpy_d2h(hw, a.weights, rb, g.stream), "expert weights to the host");
  }
  // Join moe: the previous layer's held-back experts run on the CPU now, while the GPU finishes this layer's
  // attention, router and the routing's copy (deferred-experts.h).
  profile_mark(g, ProfileMark::d2h_end);
  const bool queued_add = a.ready_flag != nullptr;
  if (queued_add && (!a.mapped || !a.x || !a.routed)) throw std::logic_error("experts bridge: glue wait without its parts");
  FlagRelease flag;
  if (queued_add) {
    if (reinterpret_cast<volatile uint32_t*>(a.ready_flag)[0] == 2u) {
      throw std::runtime_error("MoE residual add: the GPU gave up waiting for the experts' sum (10 s)");
    }
    a.routed->record(g.stream);
    // Queued now, while the GPU still runs the attention and route, unless the profile needs this layer's marks
    // collected before the add's (then after the wait, below).
    if (!gpu_profile_enabled()) queue_add_when_ready(g, a, a.n * experts.hidden);
    flag.flag = a.ready_flag;
  }
  if (deferred_experts_pending(g) && deferred_experts_join_kind(g) == DeferJoin::moe) deferred_experts_compute(g);
  const uint64_t t0 = now_ns();
  if (queued_add) a.routed->wait();
  else g.sync();
  const uint64_t t1 = now_ns();
  profile_collect(g);
  if (queued_add && gpu_profile_enabled()) queue_add_when_ready(g, a, a.n * experts.hidden);
  if (gpu_experts_wanted(a)) {  // prefill: experts streamed to the GPU beside the CPU kernel (gpu-experts-bridge.h)
    run_gpu_experts(g, experts, a, hx, hids, hw);
    g.counters.experts_wait_ns += t1 - t0;
    g.counters.experts_cpu_ns += now_ns() - t1;
    g.counters.d2h_bytes += xb + 2 * rb;
    return a.y;
  }
  float* hy = g.h_y.as<float>();
  if (a.defer > 0) {
    const int k_now = a.top_k - a.defer;
    std::vector<int32_t> now_ids(size_t(a.n * k_now)), def_ids(size_t(a.n * a.defer));
    std::vector<float> now_w(now_ids.size()), def_w(def_ids.size());
    split_deferred(hids, hw, a.n, a.top_k, a.defer, now_ids.data(), now_w.data(), def_ids.data(), def_w.data());
    if (k_now > 0) moe_forward_routed(experts, hx, a.n, now_ids.data(), now_w.data(), k_now, hy);
    else std::memset(hy, 0, xb);
    deferred_experts_add_to(g, hy);  // the previous layer's part (join moe)
    deferred_experts_hold(g, experts, a.defer_join, hx, a.n, def_ids.data(), def_w.data(), a.defer);
  } else {
    moe_forward_routed(experts, hx, a.n, hids, hw, a.top_k, hy);
    deferred_experts_add_to(g, hy);
  }
  g.counters.experts_wait_ns += t1 - t0;
  g.counters.experts_cpu_ns += now_ns() - t1;
  g.counters.experts_cpu_tokens += uint64_t(a.n);
  g.counters.d2h_bytes += xb + 2 * rb;  // over the bus either way (mapped: the kernels' own reads and writes)
  g.counters.h2d_bytes += xb;
  if (queued_add) {
    flag.release();
    profile_add_latency(g, flag.released_ns);
    return nullptr;
  }
  profile_mark(g, ProfileMark::upload_begin);
  if (!a.mapped) g.ok(api.mxc_memcpy_h2d(a.y, g.h_y.as(), xb, g.stream), "experts output to the GPU");
  return a.mapped ? hy : a.y;
}

}  // namespace mixtile::gpu
