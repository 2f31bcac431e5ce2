// Expert deferral on one-token decode steps (KTransformers' max_deferred_experts_per_token): of each
// token's top-k routed experts, the `defer` with the lowest routing weights are held back, and the CPU
// computes them while the GPU runs the next layer's attention (and, with join `moe`, its router and the
// routing's trip to the host). Their weighted sum then joins the residual stream one layer late:
//   join moe:       with layer L+1's expert output (x += experts(L+1) + deferred(L)), as KTransformers does:
//                   layer L+1's attention and router do not see deferred(L); the CPU overlaps the whole GPU
//                   part of the next layer.
//   join attention: after layer L+1's attention, before its post-attention norm and router: only the
//                   attention is overlapped, the router sees the full sum.
// Whatever reads x next that is not a MoE block of the same kind (the output head, a copy to the host, a
// dense MLP) joins a pending part first, so the last layer's part lands before the final norm. It changes
// the math (bench/RESULTS.md, docs/design-decisions.md give the measured effect); `defer` 0 is today's path.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "cpu/experts/experts.h"
#include "gpu/context.h"

namespace mixtile::gpu {

enum class DeferJoin { moe, attention };

// Splits each token's routing [n][top_k] into the `defer` lowest-weighted experts (ties: the later slot)
// and the rest, each keeping the slots' order: imm [n][top_k - defer], def [n][defer].
void split_deferred(const int32_t* ids, const float* w, int64_t n, int top_k, int defer, int32_t* imm_ids,
                    float* imm_w, int32_t* def_ids, float* def_w);

class DeferredRunner;  // MIXTILE_DEFER_ASYNC's helper thread (deferred-experts.cc)

// A layer's held-back experts, waiting to be computed and joined.
struct DeferredExperts {
  DeferredExperts();
  ~DeferredExperts();
  const ExpertsWeights* experts = nullptr;
  DeferJoin join = DeferJoin::moe;
  int64_t n = 0;
  int k = 0;                    // experts per token held back
  std::vector<float> x;         // [n][hidden] the layer's normed input (h_route is rewritten by the next layer)
  std::vector<int32_t> ids;     // [n][k]
  std::vector<float> w;         // [n][k]
  bool pending = false;         // held back, not joined yet
  bool computed = false;        // y (the context's h_def) holds their sum
  PinnedBuffer y;               // f32 [ubatch][hidden]: their weighted sum (uploaded by a join into x)
  HostFence y_fence;            // the upload of y, before the CPU rewrites it
  bool running = false;         // MIXTILE_DEFER_ASYNC: the helper thread is computing y
  std::unique_ptr<DeferredRunner> runner;  // last member: joins its thread before y goes
};

// Holds back the given experts of this step (after the layer's immediate experts ran). MIXTILE_DEFER_EAGER=1
// computes them at once (the reference schedule of the tests: same sums, no overlap). MIXTILE_DEFER_ASYNC=1
// (experimental, not measured yet) starts them at once on a helper thread, which drives the pool while this
// thread returns to issue the next layer's GPU work: the pool then also fills the host's issue time (~30-40 us
// per layer of TS, N-API and CUDA calls, during which the pool idles otherwise).
void deferred_experts_hold(GpuContext& g, const ExpertsWeights& experts, DeferJoin join, const float* x, int64_t n,
                           const int32_t* ids, const float* w, int k);
// Computes a pending part into y if not done yet (CPU pool; the GPU runs what was issued meanwhile).
void deferred_experts_compute(GpuContext& g);
// The pending part of join `moe`: computed if needed, then added into the layer's expert output on the host.
void deferred_experts_add_to(GpuContext& g, float* y_host);
// Any pending part: computed if needed, uploaded and added into x on the stream (no-op when none is pending).
void deferred_experts_join(GpuContext& g);
// Forgets a pending part (a new ubatch overwrites x; the old one's last layer had no reader).
void deferred_experts_drop(GpuContext& g);
bool deferred_experts_pending(const GpuContext& g);
DeferJoin deferred_experts_join_kind(const GpuContext& g);

}  // namespace mixtile::gpu
