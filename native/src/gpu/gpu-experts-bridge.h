// The hybrid forward's prefill experts on the GPU (issue 9 item 6), called from run_routed_experts
// (experts-bridge.cc) when the rules put the experts' prefill on the GPU (prefill_device: cuda): the
// experts the cost model gives the GPU stream their weights from host RAM and run there while the CPU
// kernel computes the rest (ExpertsSplitRunner). Decode and small batches keep the CPU path.
//
// Environment: MIXTILE_EXPERTS_PREFILL = split (default: the cost model divides the experts) | gpu (every
// expert with tokens on the GPU) | cpu (never the GPU); MIXTILE_GPU_EXPERTS_MIN_TOKENS (default 8: at one
// token the CPU kernel alone won one of the two runs on the H100 machine, 0.46 vs 0.96 ms split, and lost
// the other; from 8 tokens the GPU or the split won both; bench/RESULTS.md "GPU experts").
// Prefetch of the next layer's experts while a layer computes (gpu-experts-prefetch.h):
// MIXTILE_GPU_EXPERTS_PREFETCH=1 turns it on (off by default: on the H100 machine's 8-layer bench it
// measured no gain within the noise, bench/RESULTS.md); MIXTILE_GPU_EXPERTS_PREFETCH_MIB caps its two VRAM banks
// (default: a whole layer each); MIXTILE_GPU_EXPERTS_PREFETCH_MIN_TOKENS (default 128: from there every
// expert of a layer gets tokens, e.g. 128 x top-8 of 128) is the smallest batch that prefetches.
#pragma once
#include <cstdint>

#include "cpu/experts/experts.h"
#include "gpu/context.h"
#include "gpu/experts-bridge.h"
#include "gpu/gpu-experts-split.h"

namespace mixtile::gpu {

// Process-wide counts of the next-layer prefetch (gpu-experts-prefetch.h), for tests and benches:
// experts queued into VRAM banks, experts computed from a bank, and the banks' bytes of the last context.
struct PrefetchCounters {
  uint64_t queued = 0, used = 0, bank_bytes = 0;
};
PrefetchCounters prefetch_counters();

// The prefill split so far in this context (none before its first GPU experts call): totals and the cost
// model's constants with its learned split factors.
struct ExpertsSplitStats {
  bool used = false;
  ExpertsSplitTotals totals;
  ExpertCostParams cost;
};
ExpertsSplitStats experts_split_stats(GpuContext& g);

// Whether this batch's experts may use the GPU (rules, phase, size, environment).
bool gpu_experts_wanted(const ExpertsBridgeArgs& a);

// At load, for experts whose prefill may use the GPU: pins the layer's weights (cudaHostRegister of the
// mapped file takes seconds for a whole model) so that the first prompt does not pay for it.
void prepare_gpu_experts(GpuContext& g, const ExpertsWeights& experts, int layer_index);

// Runs the batch's experts split between the GPU and the CPU. x/ids/weights are the host copies of
// a.xn/a.ids/a.weights (the stream has been synchronised); a.y is written on the GPU experts' own
// stream, and g.stream waits for it. The state (stream, cuBLAS, scratch, pinned weights of every
// layer, the measured cost model) lives in g.experts_gpu, made on first use.
void run_gpu_experts(GpuContext& g, const ExpertsWeights& experts, const ExpertsBridgeArgs& a, const float* x,
                     const int32_t* ids, const float* weights);

}  // namespace mixtile::gpu
