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
                "pcie_gbps=%.2f,gpu_base_us=%.2f,gpu_row_us=%.4f,gpu_call_us=%.1f,cpu_base_us=%.2f,cpu_row_us=%.4f,"
                "split_cpu_x=%.2f,split_gpu_x=%.2f",
                pcie_gbps, gpu_base_us, gpu_row_us, gpu_call_us, cpu_base_us, cpu_row_us, split_cpu_x, split_gpu_x);
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
                   : key == "split_cpu_x" ? &p.split_cpu_x
                   : key == "split_gpu_x" ? &p.split_gpu_x
                                          : nullptr;
    if (!slot) {
      throw std::invalid_argument("MIXTILE_EXPERT_COST: unknown key \"" + key +
                                  "\" (known: pcie_gbps gpu_base_us gpu_row_us gpu_call_us cpu_base_us cpu_row_us "
                                  "split_cpu_x split_gpu_x)");
    }
    *slot = v;
  }
  p.source = p.source.empty() ? "env" : p.source + "+env";
  return p;
}

namespace {

// Unscaled sums over the experts with tokens: CPU time of those not on the GPU; GPU copy, compute and the
// longer of (copy, compute) of one expert, of those on it.
struct Sides {
  double cpu = 0, copy = 0, compute = 0, longest = 0;
  int cpu_n = 0, gpu_n = 0;
};

double cpu_us(const ExpertCostParams& p, int64_t r) { return p.cpu_base_us + double(r - 1) * p.cpu_row_us; }
double gpu_us(const ExpertCostParams& p, int64_t r) { return p.gpu_base_us + double(r - 1) * p.gpu_row_us; }
double copy_us(const ExpertCostParams& p, double bytes) { return p.pcie_gbps > 0 ? bytes / (p.pcie_gbps * 1e3) : 0; }

void add_gpu(Sides& s, double c, double copy) {
  s.copy += copy;
  s.compute += c;
  s.longest = std::max(s.longest, std::min(c, copy));
  ++s.gpu_n;
}

// The copy of expert i+1 overlaps the compute of expert i: the slower side sets the pace, plus one
// expert of the other side at the ends of the pipeline.
double gpu_side_us(const ExpertCostParams& p, const Sides& s) {
  if (s.gpu_n == 0) return 0;
  return (std::max(s.copy, s.compute) + s.longest + p.gpu_call_us) * (s.cpu_n ? p.split_gpu_x : 1.0);
}
double cpu_side_us(const ExpertCostParams& p, const Sides& s) {
  return std::max(s.cpu, 0.0) * (s.gpu_n ? p.split_cpu_x : 1.0);
}

// A resident expert (prefetched into VRAM before the call) costs the GPU its compute only.
Sides sides_of(const ExpertCostParams& p, const std::vector<int64_t>& rows, const std::vector<uint8_t>& on_gpu,
               double expert_bytes, int64_t resident) {
  Sides s;
  for (size_t e = 0; e < rows.size(); ++e) {
    if (rows[e] <= 0) continue;
    if (on_gpu[e]) {
      add_gpu(s, gpu_us(p, rows[e]), int64_t(e) < resident ? 0 : copy_us(p, expert_bytes));
    } else {
      s.cpu += cpu_us(p, rows[e]);
      ++s.cpu_n;
    }
  }
  return s;
}

}  // namespace

double predict_cpu_ms(const ExpertCostParams& p, const std::vector<int64_t>& rows, const std::vector<uint8_t>& on_gpu,
                      double expert_bytes, int64_t resident) {
  return cpu_side_us(p, sides_of(p, rows, on_gpu, expert_bytes, resident)) / 1e3;
}

double predict_gpu_ms(const ExpertCostParams& p, const std::vector<int64_t>& rows, const std::vector<uint8_t>& on_gpu,
                      double expert_bytes, int64_t resident) {
  return gpu_side_us(p, sides_of(p, rows, on_gpu, expert_bytes, resident)) / 1e3;
}

ExpertSplit choose_expert_split(const ExpertCostParams& p, const std::vector<int64_t>& rows, double expert_bytes,
                                ExpertsPlacement mode, int64_t resident) {
  const size_t E = rows.size();
  ExpertSplit s;
  s.on_gpu.assign(E, 0);
  std::vector<size_t> active;
  for (size_t e = 0; e < E; ++e)
    if (rows[e] > 0) active.push_back(e);
  // Resident experts first (no copy left to pay), then most tokens first: a GPU expert costs its bytes
  // whatever its tokens, a CPU expert grows with them.
  const auto held = [&](size_t e) { return int64_t(e) < resident; };
  std::stable_sort(active.begin(), active.end(),
                   [&](size_t a, size_t b) { return held(a) != held(b) ? held(a) : rows[a] > rows[b]; });
  size_t best_k = 0;
  if (mode == ExpertsPlacement::gpu) {
    best_k = active.size();
  } else if (mode == ExpertsPlacement::split) {
    // Running sums make each k O(1): GPU side = the first k, CPU side = the rest.
    Sides sd;
    for (size_t e : active) {
      sd.cpu += cpu_us(p, rows[e]);
      ++sd.cpu_n;
    }
    double best = cpu_side_us(p, sd);
    for (size_t k = 1; k <= active.size(); ++k) {
      const size_t e = active[k - 1];
      add_gpu(sd, gpu_us(p, rows[e]), held(e) ? 0 : copy_us(p, expert_bytes));
      sd.cpu -= cpu_us(p, rows[e]);
      --sd.cpu_n;
      const double t = std::max(gpu_side_us(p, sd), cpu_side_us(p, sd));
      if (t < best) {
        best = t;
        best_k = k;
      }
    }
  }
  for (size_t i = 0; i < best_k; ++i) s.on_gpu[active[i]] = 1;
  s.gpu_experts = int(best_k);
  s.cpu_experts = int(active.size() - best_k);
  s.cpu_ms = predict_cpu_ms(p, rows, s.on_gpu, expert_bytes, resident);
  s.gpu_ms = predict_gpu_ms(p, rows, s.on_gpu, expert_bytes, resident);
  return s;
}

ExpertsPlacement parse_placement(const std::string& s) {
  if (s == "cpu") return ExpertsPlacement::cpu;
  if (s == "gpu") return ExpertsPlacement::gpu;
  if (s == "split") return ExpertsPlacement::split;
  throw std::invalid_argument("experts placement must be cpu, gpu or split, got \"" + s + "\"");
}

}  // namespace mixtile
