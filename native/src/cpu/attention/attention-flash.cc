// Query-block plan, KV splits and the merge of split results of the flash attention entries;
// see attention-flash.h.
#include "cpu/attention/attention-flash.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <unordered_map>

#include "threadpool.h"

namespace mixtile {

namespace {

constexpr int64_t TILE = 64;  // the entries' KV tile: splits start on tile boundaries

int64_t split_len(const FlashBlock& b, int splits) {
  const int64_t len = (b.ctx + splits - 1) / splits;
  return (len + TILE - 1) / TILE * TILE;
}

bool has_prefill(const AttentionArgs& a) {
  if (a.n <= 64) {  // decode batches: no allocation on this per-layer path
    for (int64_t i = 1; i < a.n; ++i)
      for (int64_t j = 0; j < i; ++j)
        if (a.seq[i] == a.seq[j]) return true;
    return false;
  }
  std::unordered_map<int32_t, int> seen;
  for (int64_t i = 0; i < a.n; ++i) {
    if (++seen[a.seq[i]] >= 2) return true;
  }
  return false;
}

}  // namespace

int64_t FlashPlan::split_begin(const FlashBlock& b, int s) const { return std::min(b.ctx, s * split_len(b, splits)); }
int64_t FlashPlan::split_end(const FlashBlock& b, int s) const { return std::min(b.ctx, (s + 1) * split_len(b, splits)); }

FlashPlan flash_plan(const AttentionArgs& a, int threads) {
  FlashPlan plan;
  const int group = a.n_heads / a.n_kv_heads;
  const int per_block = std::max(1, FLASH_MAX_ROWS / group);
  plan.tokens.resize(size_t(a.n));
  for (int64_t i = 0; i < a.n; ++i) plan.tokens[size_t(i)] = int32_t(i);
  std::stable_sort(plan.tokens.begin(), plan.tokens.end(), [&](int32_t x, int32_t y) { return a.seq[x] < a.seq[y]; });
  int64_t max_ctx = 0;
  for (int64_t i = 0; i < a.n;) {
    FlashBlock b;
    b.first = int32_t(i);
    b.seq = a.seq[plan.tokens[size_t(i)]];
    while (i < a.n && b.count < per_block && a.seq[plan.tokens[size_t(i)]] == b.seq) {
      b.ctx = std::max<int64_t>(b.ctx, int64_t(a.pos[plan.tokens[size_t(i)]]) + 1);
      ++b.count;
      ++i;
    }
    max_ctx = std::max(max_ctx, b.ctx);
    plan.blocks.push_back(b);
  }
  std::stable_sort(plan.blocks.begin(), plan.blocks.end(),
                   [](const FlashBlock& x, const FlashBlock& y) { return x.ctx > y.ctx; });
  // Two tasks per thread at least, where the contexts are long enough to split.
  const int64_t tasks = int64_t(plan.blocks.size()) * a.n_kv_heads;
  if (tasks < 2 * int64_t(threads)) {
    const int64_t want = (2 * int64_t(threads) + tasks - 1) / tasks;
    plan.splits = int(std::max<int64_t>(1, std::min(want, max_ctx / FLASH_MIN_SPLIT)));
  }
  return plan;
}

bool flash_worth_it(const AttentionArgs& a, int threads) {
  if (has_prefill(a)) return true;
  int64_t max_ctx = 0;
  for (int64_t i = 0; i < a.n; ++i) max_ctx = std::max<int64_t>(max_ctx, int64_t(a.pos[i]) + 1);
  // A decode batch whose (token, KV head) tasks fill the pool from FLASH_MIN_SPLIT positions: one
  // block per task (2 threads, 32/4 heads, f16, F32 entry: 0.74 vs 0.89 ms per call at 2048
  // positions, 83 vs 74 GFLOP per CPU-s at 512, equal at 64). Else one block per token, so
  // flash_plan splits iff the second test holds.
  if (a.n * a.n_kv_heads >= threads && max_ctx >= FLASH_MIN_SPLIT) return true;
  return a.n * a.n_kv_heads < 2 * int64_t(threads) && max_ctx / FLASH_MIN_SPLIT >= 2;
}


void flash_run(const AttentionArgs& a, const FlashPlan& plan,
               const std::function<void(const FlashBlock&, int kvh, int64_t begin, int64_t end, FlashPartial*)>& fn) {
  const int S = plan.splits;
  const int64_t pairs = int64_t(plan.blocks.size()) * a.n_kv_heads;
  if (S == 1) {
    attention_for(a, pairs, [&](int64_t task, int) {
      const FlashBlock& b = plan.blocks[size_t(task / a.n_kv_heads)];
      fn(b, int(task % a.n_kv_heads), 0, b.ctx, nullptr);
    });
    return;
  }
  const int d = a.head_dim;
  const int group = a.n_heads / a.n_kv_heads;
  int rows = 0;
  for (const FlashBlock& b : plan.blocks) rows = std::max(rows, b.count * group);
  // One slot per task, [rows][d] + m[rows] + l[rows]; uninitialized (every task writes its rows).
  const size_t slot = size_t(rows) * (size_t(d) + 2);
  std::unique_ptr<float[]> parts(new float[size_t(pairs * S) * slot]);
  auto partial = [&](int64_t task) {
    float* base = parts.get() + size_t(task) * slot;
    return FlashPartial{base, base + size_t(rows) * d, base + size_t(rows) * (d + 1)};
  };
  attention_for(a, pairs * S, [&](int64_t task, int) {
    const int64_t pair = task / S;
    const int s = int(task % S);
    const FlashBlock& b = plan.blocks[size_t(pair / a.n_kv_heads)];
    FlashPartial p = partial(task);
    const int64_t begin = plan.split_begin(b, s), end = plan.split_end(b, s);
    if (end <= begin) {
      std::fill(p.m, p.m + rows, -INFINITY);
      std::fill(p.l, p.l + rows, 0.f);
      return;
    }
    fn(b, int(pair % a.n_kv_heads), begin, end, &p);
  });
  // out = sum_s o_s e^(m_s - m) / sum_s l_s e^(m_s - m), m = max_s m_s (splits where a row saw
  // only masked positions carry m ~ -1e30: weight 0).
  parallel_for(pairs, [&](int64_t pair, int) {
    const FlashBlock& b = plan.blocks[size_t(pair / a.n_kv_heads)];
    const int kvh = int(pair % a.n_kv_heads);
    for (int r = 0; r < b.count * group; ++r) {
      float m = -INFINITY;
      for (int s = 0; s < S; ++s) m = std::max(m, partial(pair * S + s).m[r]);
      const int64_t i = plan.tokens[size_t(b.first + r / group)];
      float* out = a.out + (i * a.n_heads + int64_t(kvh) * group + r % group) * d;
      std::fill(out, out + d, 0.f);
      double l = 0;
      for (int s = 0; s < S; ++s) {
        FlashPartial p = partial(pair * S + s);
        if (p.l[r] == 0) continue;
        const float w = std::exp(p.m[r] - m);
        l += double(w) * p.l[r];
        for (int j = 0; j < d; ++j) out[j] += w * p.o[r * d + j];
      }
      const float inv = float(1.0 / l);
      for (int j = 0; j < d; ++j) out[j] *= inv;
    }
  });
}

}  // namespace mixtile
