// Expert CPU/GPU cost model: predictions and the split. See expert-cost.h.
#include "gpu/expert-cost.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <sstream>
#include <stdexcept>

namespace mixtile {

std::string ExpertCostParams::str() const {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "pcie_gbps=%.2f,gpu_base_us=%.2f,gpu_row_us=%.4f,gpu_call_us=%.1f,cpu_base_us=%.2f,cpu_row_us=%.4f",
                pcie_gbps, gpu_base_us, gpu_row_us, gpu_call_us, cpu_base_us, cpu_row_us);
  return buf;
}

ExpertCostParams expert_cost_from_env(ExpertCostParams p) {
  const char* env = std::getenv("MIXTILE_EXPERT_COST");
  if (!env || !*env) return p;
  std::stringstream ss(env);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const size_t eq = item.find('=');
    const std::string key = item.substr(0, eq);
    char* end = nullptr;
    const double v = eq == std::string::npos ? -1 : std::strtod(item.c_str() + eq + 1, &end);
    if (eq == std::string::npos || end == item.c_str() + eq + 1 || *end || v < 0) {
      throw std::invalid_argument("MIXTILE_EXPERT_COST: \"" + item + "\" is not key=non-negative number");
    }
    double* slot = key == "pcie_gbps"     ? &p.pcie_gbps
                   : key == "gpu_base_us" ? &p.gpu_base_us
                   : key == "gpu_row_us"  ? &p.gpu_row_us
                   : key == "gpu_call_us" ? &p.gpu_call_us
                   : key == "cpu_base_us" ? &p.cpu_base_us
                   : key == "cpu_row_us"  ? &p.cpu_row_us
                                          : nullptr;
    if (!slot) {
      throw std::invalid_argument("MIXTILE_EXPERT_COST: unknown key \"" + key +
                                  "\" (known: pcie_gbps gpu_base_us gpu_row_us gpu_call_us cpu_base_us cpu_row_us)");
    }
    *slot = v;
  }
  p.source = p.source.empty() ? "env" : p.source + "+env";
  return p;
}

double predict_cpu_ms(const ExpertCostParams& p, const std::vector<int64_t>& rows, const std::vector<uint8_t>& on_gpu) {
  double us = 0;
  for (size_t e = 0; e < rows.size(); ++e)
    if (rows[e] > 0 && !on_gpu[e]) us += p.cpu_base_us + double(rows[e] - 1) * p.cpu_row_us;
  return us / 1e3;
}

// The copy of expert i+1 overlaps the compute of expert i: the slower side sets the pace, plus one
// expert of the other side at the ends of the pipeline.
double predict_gpu_ms(const ExpertCostParams& p, const std::vector<int64_t>& rows, const std::vector<uint8_t>& on_gpu,
                      double expert_bytes) {
  const double copy_us = p.pcie_gbps > 0 ? expert_bytes / (p.pcie_gbps * 1e3) : 0;  // 0: not measured
  double copy = 0, compute = 0, longest = 0;
  int k = 0;
  for (size_t e = 0; e < rows.size(); ++e) {
    if (rows[e] <= 0 || !on_gpu[e]) continue;
    const double c = p.gpu_base_us + double(rows[e] - 1) * p.gpu_row_us;
    copy += copy_us;
    compute += c;
    longest = std::max(longest, std::min(c, copy_us));
    ++k;
  }
  return k ? (std::max(copy, compute) + longest + p.gpu_call_us) / 1e3 : 0;
}

ExpertSplit choose_expert_split(const ExpertCostParams& p, const std::vector<int64_t>& rows, double expert_bytes,
                                ExpertsPlacement mode) {
  const size_t E = rows.size();
  ExpertSplit s;
  s.on_gpu.assign(E, 0);
  std::vector<size_t> active;
  for (size_t e = 0; e < E; ++e)
    if (rows[e] > 0) active.push_back(e);
  // Most tokens first: a GPU expert costs its bytes whatever its tokens, a CPU expert grows with them.
  std::stable_sort(active.begin(), active.end(), [&](size_t a, size_t b) { return rows[a] > rows[b]; });
  size_t best_k = 0;
  if (mode == ExpertsPlacement::gpu) {
    best_k = active.size();
  } else if (mode == ExpertsPlacement::split) {
    // Prefix sums make each k O(1): GPU side = the first k, CPU side = the rest.
    const double copy_us = p.pcie_gbps > 0 ? expert_bytes / (p.pcie_gbps * 1e3) : 1e30;
    double cpu_rest = 0;
    for (size_t e : active) cpu_rest += p.cpu_base_us + double(rows[e] - 1) * p.cpu_row_us;
    double best = cpu_rest, copy = 0, compute = 0, longest = 0;
    for (size_t k = 1; k <= active.size(); ++k) {
      const size_t e = active[k - 1];
      const double c = p.gpu_base_us + double(rows[e] - 1) * p.gpu_row_us;
      copy += copy_us;
      compute += c;
      longest = std::max(longest, std::min(c, copy_us));
      cpu_rest -= p.cpu_base_us + double(rows[e] - 1) * p.cpu_row_us;
      const double t = std::max(std::max(copy, compute) + longest + p.gpu_call_us, std::max(cpu_rest, 0.0));
      if (t < best) {
        best = t;
        best_k = k;
      }
    }
  }
  for (size_t i = 0; i < best_k; ++i) s.on_gpu[active[i]] = 1;
  s.gpu_experts = int(best_k);
  s.cpu_experts = int(active.size() - best_k);
  s.cpu_ms = predict_cpu_ms(p, rows, s.on_gpu);
  s.gpu_ms = predict_gpu_ms(p, rows, s.on_gpu, expert_bytes);
  return s;
}

ExpertsPlacement parse_placement(const std::string& s) {
  if (s == "cpu") return ExpertsPlacement::cpu;
  if (s == "gpu") return ExpertsPlacement::gpu;
  if (s == "split") return ExpertsPlacement::split;
  throw std::invalid_argument("experts placement must be cpu, gpu or split, got \"" + s + "\"");
}

}  // namespace mixtile
