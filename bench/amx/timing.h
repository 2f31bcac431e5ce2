// Shared by the AMX speed harnesses (bench.cc, q4k-bench.cc): the median timing of the experts op and the
// routings they time it on (random distinct top-k, or every expert exactly m tokens).
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

#include "common.h"
#include "cpu/amx/amx.h"

namespace bench {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Median of `reps` timed runs after 2 warm-ups, in seconds.
inline double time_forward(const mixtile::amx::PackedExperts& pe, const float* x, int64_t n,
                           const std::vector<int32_t>& ids, const std::vector<float>& w, int top_k, float* y,
                           int min_tokens, int reps = 7) {
  mixtile::amx::ForwardArgs a{x, n, ids.data(), w.data(), top_k, y, min_tokens};
  for (int i = 0; i < 2; ++i) mixtile::amx::experts_forward(pe, a);
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = Clock::now();
    mixtile::amx::experts_forward(pe, a);
    t.push_back(seconds_since(t0));
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct Routing {
  std::vector<int32_t> ids;
  std::vector<float> w;
};

// Each token picks top_k distinct random experts of n_expert.
inline Routing random_routing(int64_t n, int top_k, uint64_t seed, int64_t n_expert = 128) {
  Rng r(seed);
  Routing rt;
  for (int64_t t = 0; t < n; ++t) {
    std::vector<int32_t> used;
    while (int(used.size()) < top_k) {
      const int32_t e = int32_t(r.next() % uint64_t(n_expert));
      if (std::find(used.begin(), used.end(), e) == used.end()) used.push_back(e);
    }
    for (int32_t e : used) {
      rt.ids.push_back(e);
      rt.w.push_back(0.125f);
    }
  }
  return rt;
}

// n = m * n_expert / top_k tokens, token t -> experts (t * top_k + j) mod n_expert: every expert gets exactly m.
inline Routing uniform_routing(int64_t m, int top_k, int64_t n_expert = 128) {
  Routing rt;
  const int64_t n = m * n_expert / top_k;
  for (int64_t t = 0; t < n; ++t)
    for (int j = 0; j < top_k; ++j) {
      rt.ids.push_back(int32_t((t * top_k + j) % n_expert));
      rt.w.push_back(0.125f);
    }
  return rt;
}

}  // namespace bench
