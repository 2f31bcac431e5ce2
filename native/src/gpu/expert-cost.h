// Cost model that splits one layer's routed experts between the CPU kernels and the GPU (issue 9
// item 6): per expert, predicted CPU time grows with its tokens (weights streamed from DRAM once,
// then GEMM rows), predicted GPU time is dominated by streaming its raw bytes over PCIe (the GEMMs
// overlap the copies). The GPU gets the experts with the most tokens, as many as minimise
// max(CPU time, GPU time): both sides run at once. Why: docs/design-decisions.md.
//
// The constants are measured (expert_cost_calibrate, once per process on the first layer that
// asks, or `mixtile bench --op experts --device ...`), never guessed; MIXTILE_EXPERT_COST overrides
// any of them: "pcie_gbps=48,gpu_base_us=6,gpu_row_us=0.05,gpu_call_us=80,cpu_base_us=40,cpu_row_us=2"
// (and split_cpu_x / split_gpu_x).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mixtile {

struct ExpertCostParams {
  double pcie_gbps = 0;    // host-to-device GB/s from the pinned (or staged) expert weights
  double gpu_base_us = 0;  // GPU time of one expert at 1 token: dequant + launches
  double gpu_row_us = 0;   // GPU time per extra token of one expert (the GEMMs)
  double gpu_call_us = 0;  // fixed cost of using the GPU in a call (routing upload, gather, combine, sync)
  double cpu_base_us = 0;  // CPU time of one expert at 1 token (its weights streamed from DRAM)
  double cpu_row_us = 0;   // CPU time per extra token of one expert
  // While both sides run at once each is slower than alone (they share DRAM, and the cores): factors on
  // the CPU and the GPU time of a split, learned from measured splits (1 = none known). A placement that
  // leaves one side empty is predicted without them.
  double split_cpu_x = 1, split_gpu_x = 1;
  std::string source;      // how they were obtained: "measured", "env", "measured+env"

  bool complete() const { return pcie_gbps > 0 && gpu_base_us > 0 && cpu_base_us > 0; }
  std::string str() const;
};

// Applies MIXTILE_EXPERT_COST (if set) on top of `p`. Throws std::invalid_argument on a malformed value.
ExpertCostParams expert_cost_from_env(ExpertCostParams p);

// Predicted milliseconds of the CPU experts kernel / the GPU path for the experts with rows > 0 in
// `rows` (tokens routed to each expert) whose `on_gpu` flag equals the side asked for (times the split
// factors when the other side has experts too). Experts [0, resident) are already in VRAM (prefetched
// while the previous layer ran): on the GPU they cost their compute only.
double predict_cpu_ms(const ExpertCostParams& p, const std::vector<int64_t>& rows, const std::vector<uint8_t>& on_gpu,
                      double expert_bytes, int64_t resident = 0);
double predict_gpu_ms(const ExpertCostParams& p, const std::vector<int64_t>& rows, const std::vector<uint8_t>& on_gpu,
                      double expert_bytes, int64_t resident = 0);

enum class ExpertsPlacement { cpu, gpu, split };
struct ExpertSplit {
  std::vector<uint8_t> on_gpu;  // [n_expert]
  int gpu_experts = 0, cpu_experts = 0;
  double cpu_ms = 0, gpu_ms = 0;  // predicted
};
// cpu: every expert on the CPU; gpu: every expert with tokens on the GPU; split: the first k experts on
// the GPU, k minimising max(cpu, gpu) (ties: the smaller k), in the order: resident ones (see above)
// first, then the most tokens first.
ExpertSplit choose_expert_split(const ExpertCostParams& p, const std::vector<int64_t>& rows, double expert_bytes,
                                ExpertsPlacement mode, int64_t resident = 0);
// "cpu" / "gpu" / "split"; throws std::invalid_argument naming the choices.
ExpertsPlacement parse_placement(const std::string& s);

}  // namespace mixtile
