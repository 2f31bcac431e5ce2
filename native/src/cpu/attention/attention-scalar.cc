// Reference attention: plain loops, two passes (scores, then exact softmax) per (token, head).
// Correct for every shape and KV type; the fallback when a fast path declines.
#include <cmath>
#include <vector>

#include "cpu/attention/attention.h"
#include "threadpool.h"

namespace mixtile {

void attention_scalar(const AttentionArgs& a) {
  const int group = a.n_heads / a.n_kv_heads;
  const int d = a.head_dim;
  std::vector<std::vector<float>> scratch(static_cast<size_t>(pool_threads()));
  attention_for(a, a.n * a.n_heads, [&](int64_t task, int thread) {
    const int64_t i = task / a.n_heads;
    const int h = int(task % a.n_heads);
    const int kvh = h / group;
    const float* q = a.q + (i * a.n_heads + h) * d;
    float* out = a.out + (i * a.n_heads + h) * d;
    const int64_t n_ctx = int64_t(a.pos[i]) + 1;
    const int64_t base = int64_t(a.seq[i]) * a.seq_stride + int64_t(kvh) * d;
    std::vector<float>& s = scratch[size_t(thread)];
    s.resize(size_t(n_ctx));
    float mx = -INFINITY;
    for (int64_t t = 0; t < n_ctx; ++t) {
      const int64_t row = base + t * a.pos_stride;
      float dot = 0;
      for (int j = 0; j < d; ++j) dot += q[j] * kv_load(a.kv_type, a.k, row + j);
      s[size_t(t)] = dot * a.scale;
      mx = std::max(mx, s[size_t(t)]);
    }
    double sum = 0;
    for (int64_t t = 0; t < n_ctx; ++t) {
      s[size_t(t)] = std::exp(s[size_t(t)] - mx);
      sum += s[size_t(t)];
    }
    for (int j = 0; j < d; ++j) out[j] = 0;
    for (int64_t t = 0; t < n_ctx; ++t) {
      const int64_t row = base + t * a.pos_stride;
      const float p = float(s[size_t(t)] / sum);
      for (int j = 0; j < d; ++j) out[j] += p * kv_load(a.kv_type, a.v, row + j);
    }
  });
}

}  // namespace mixtile
