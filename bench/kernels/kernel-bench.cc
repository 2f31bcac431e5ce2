// Standalone experts benchmark: the same measurement as src/engine/bench-op.ts --op experts, for
// machines without Node. Prints one line per (threads, tokens): wall ms (median), weight GB/s,
// GFLOP/s, and the DRAM floor for the touched experts' bytes measured in the same run.
#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "cpu/experts/experts.h"
#include "cpu/isa.h"
#include "synth.h"
#include "threadpool.h"

using namespace mixtile;

static std::vector<int> parse_list(const char* s) {
  std::vector<int> v;
  for (const char* p = s; *p;) {
    v.push_back(std::atoi(p));
    while (*p && *p != ',') ++p;
    if (*p == ',') ++p;
  }
  return v;
}

static GgmlType parse_type(const std::string& s) {
  if (s == "f32") return GgmlType::F32;
  if (s == "f16") return GgmlType::F16;
  if (s == "bf16") return GgmlType::BF16;
  if (s == "q8_0") return GgmlType::Q8_0;
  if (s == "q4_k") return GgmlType::Q4_K;
  if (s == "q5_k") return GgmlType::Q5_K;
  if (s == "q6_k") return GgmlType::Q6_K;
  std::fprintf(stderr, "unknown type %s\n", s.c_str());
  std::exit(2);
}

int main(int argc, char** argv) {
  std::string type = "q4_k", down;
  std::vector<int> tokens = {1, 512}, threads = {2};
  int reps = 5, probe_mib = 2048;
  int64_t hidden = 2048, ffn = 768, n_expert = 128, top_k = 8;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k == "--type") type = argv[i + 1];
    else if (k == "--down-type") down = argv[i + 1];
    else if (k == "--tokens") tokens = parse_list(argv[i + 1]);
    else if (k == "--threads") threads = parse_list(argv[i + 1]);
    else if (k == "--reps") reps = std::atoi(argv[i + 1]);
    else if (k == "--probe-mib") probe_mib = std::atoi(argv[i + 1]);
    else if (k == "--isa") {
      Isa l;
      if (!parse_isa(argv[i + 1], &l) || !set_isa(l)) return std::fprintf(stderr, "bad --isa\n"), 2;
    } else return std::fprintf(stderr, "unknown flag %s\n", k.c_str()), 2;
  }
  if (down.empty()) down = type;
  GgmlType wt = parse_type(type), dt = parse_type(down);
  const int64_t gne[4] = {hidden, ffn, n_expert, 1}, dne[4] = {ffn, hidden, n_expert, 1}, rne[4] = {hidden, n_expert, 1, 1};
  auto gate = synth_weight(wt, gne, 1), up = synth_weight(wt, gne, 2), dn = synth_weight(dt, dne, 3);
  auto router = synth_weight(GgmlType::F32, rne, 4);
  auto ew = experts_load(*gate, *up, *dn, *router);
  const double expert_bytes = double(2 * gate->matrix_bytes() + dn->matrix_bytes());
  std::printf("# %s, isa %s, types %s/%s\n", cpu_brand().c_str(), isa_name(active_isa()), type.c_str(), down.c_str());
  for (int th : threads) {
    set_threads(th);
    double bw = mem_read_bandwidth(size_t(probe_mib), 3);
    std::printf("# %d threads: DRAM read %.1f GB/s (%d MiB page-unique, best of 3)\n", th, bw, probe_mib);
    for (int n : tokens) {
      std::vector<float> x(size_t(n * hidden)), y(size_t(n * hidden));
      for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(float(i) * 0.37f);
      std::vector<double> ms;
      size_t touched = 0;
      uint32_t s = 12345;
      for (int r = -1; r < reps; ++r) {
        std::vector<int32_t> ids(size_t(n * top_k));
        std::vector<float> w(size_t(n * top_k), 1.f / float(top_k));
        for (int t = 0; t < n; ++t) {
          std::set<int32_t> used;
          for (int j = 0; j < top_k; ++j) {
            s = s * 1664525u + 1013904223u;
            int32_t e = int32_t(s % uint32_t(n_expert));
            while (used.count(e)) e = (e + 1) % int32_t(n_expert);
            used.insert(e);
            ids[size_t(t * top_k + j)] = e;
          }
        }
        auto t0 = std::chrono::steady_clock::now();
        moe_forward_routed(*ew, x.data(), n, ids.data(), w.data(), int(top_k), y.data());
        double dt_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        if (r >= 0) ms.push_back(dt_ms);
        touched = std::set<int32_t>(ids.begin(), ids.end()).size();
      }
      std::sort(ms.begin(), ms.end());
      double med = ms[ms.size() / 2];
      double bytes = double(touched) * expert_bytes, flops = 6.0 * double(n) * double(top_k) * double(hidden * ffn);
      double floor_ms = bytes / (bw * 1e9) * 1e3;
      std::printf("experts %s/%s threads=%d n=%d: %.3f ms (best %.3f)  %.1f GB/s  %.1f GFLOP/s  floor %.3f ms (%.2fx)\n",
                  type.c_str(), down.c_str(), th, n, med, ms[0], bytes / (med * 1e6), flops / (med * 1e6), floor_ms,
                  med / floor_ms);
    }
  }
  return 0;
}
