// One layer's routed experts divided between the CPU kernels and the GPU at once (prefill): the cost
// model (expert-cost.h) picks which experts stream to the GPU; a helper thread enqueues them
// (GpuExperts) while the CPU experts kernel computes the rest on the thread pool; the CPU part is
// then uploaded and added on the compute stream.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "cpu/experts/experts.h"
#include "gpu/expert-cost.h"
#include "gpu/gpu-experts.h"

namespace mixtile {

// Sums over the calls the cost model planned (for `bench -v` and tuning): how the experts were divided and
// each side's measured and predicted milliseconds (the GPU's measured at the next call, or when read).
struct ExpertsSplitTotals {
  uint64_t calls = 0, cpu_experts = 0, gpu_experts = 0;
  double cpu_ms = 0, gpu_ms = 0, predicted_cpu_ms = 0, predicted_gpu_ms = 0;
};

struct ExpertsSplitResult {
  ExpertSplit plan;      // which experts went where, and the predicted times (after the correction below)
  GpuExpertsRun gpu;     // what the GPU streamed
  int gpu_alone = 0;     // experts the GPU would get with none prefetched (the next layer's prefetch size)
  double cpu_ms = 0;     // measured: the CPU experts part (wall clock)
};

// Measures the cost model's constants on this layer's weights (CPU kernel at 1 and 32 tokens per
// expert, PCIe H2D from the weights, GPU expert at 1 and 256 tokens, one small whole call), then
// applies MIXTILE_EXPERT_COST. Tens of milliseconds; the GPU's scratch grows to those sizes.
ExpertCostParams calibrate_expert_cost(GpuExperts& gpu, const GpuExpertWeights& gw, const ExpertsWeights& ew);

class ExpertsSplitRunner {
 public:
  explicit ExpertsSplitRunner(GpuExperts& gpu) : gpu_(gpu) {}
  ~ExpertsSplitRunner();
  ExpertsSplitRunner(const ExpertsSplitRunner&) = delete;
  ExpertsSplitRunner& operator=(const ExpertsSplitRunner&) = delete;

  // y_dev[n][hidden] = the routed experts of the batch (overwritten). x_host and x_dev hold the same
  // rows (f32 [n][hidden]); ids/weights host [n][top_k]. The experts go where `on_gpu` [n_expert] says
  // when given, else where `mode` and the cost model say (calibrated on first use), with the experts
  // `resident` holds for gw (prefetched) costing the GPU no copy. Returns when the CPU part is done and
  // the rest is enqueued on gpu.compute_stream(). `after_gpu_enqueued(gpu_alone)`, if given, runs on the
  // thread that drives the GPU as soon as its part is enqueued (while the CPU part still runs): the
  // place to queue the next layer's prefetch behind this layer's copies.
  ExpertsSplitResult forward(const GpuExpertWeights& gw, const ExpertsWeights& ew, const float* x_host,
                             const float* x_dev, int64_t n, const int32_t* ids, const float* weights, int top_k,
                             ExpertsPlacement mode, const uint8_t* on_gpu, float* y_dev,
                             const ResidentExperts* resident = nullptr,
                             const std::function<void(int gpu_alone)>& after_gpu_enqueued = {});
  // The cost model's constants (measured on `gw`/`ew` on first use).
  const ExpertCostParams& cost(const GpuExpertWeights& gw, const ExpertsWeights& ew);
  // Measured / predicted-alone time of each side in calls that ran both at once (moving average, from 1
  // or MIXTILE_EXPERT_COST's split_cpu_x / split_gpu_x): the constants are measured one side at a time,
  // while in a split the CPU kernel and the PCIe copies share DRAM and cores. They are the cost model's
  // split factors (expert-cost.h). MIXTILE_EXPERT_COST_ADAPT=0 keeps them where they start.
  double cpu_scale() const { return cost_.split_cpu_x; }
  double gpu_scale() const { return cost_.split_gpu_x; }
  // The constants in use, or none (source empty) before the first planned call measured them.
  const ExpertCostParams& cost_in_use() const { return cost_; }
  // Totals so far; waits for the last call's GPU part to take its time.
  ExpertsSplitTotals totals();

 private:
  void grow_dev(size_t bytes);
  void grow_pinned(size_t bytes);

  GpuExperts& gpu_;
  ExpertCostParams cost_;
  bool calibrated_ = false;
  double pending_gpu_pred_ms_ = 0;  // GPU prediction of the last split call, checked at the next
  bool gpu_time_pending_ = false;   // the last planned call's GPU time is not yet in totals_
  ExpertsSplitTotals totals_;
  void* y_dev_tmp_ = nullptr;
  size_t y_dev_tmp_bytes_ = 0;
  float* y_pinned_ = nullptr;  // the CPU part, uploaded from here
  size_t y_pinned_bytes_ = 0;
  mxc_event* y_up_done_ = nullptr;
  std::vector<float> xv_, yv_, wv_;  // the CPU part as a batch of one (token, slot) pair per row
  std::vector<int32_t> idv_;
  std::vector<int64_t> first_;
};

}  // namespace mixtile
