// Query-block plan of the flash attention entries; see attention-flash.h.
#include "cpu/attention/attention-flash.h"

#include <algorithm>
#include <unordered_map>

namespace mixtile {

FlashPlan flash_plan(const AttentionArgs& a) {
  FlashPlan plan;
  const int group = a.n_heads / a.n_kv_heads;
  const int per_block = std::max(1, FLASH_MAX_ROWS / group);
  plan.tokens.resize(size_t(a.n));
  for (int64_t i = 0; i < a.n; ++i) plan.tokens[size_t(i)] = int32_t(i);
  std::stable_sort(plan.tokens.begin(), plan.tokens.end(), [&](int32_t x, int32_t y) { return a.seq[x] < a.seq[y]; });
  for (int64_t i = 0; i < a.n;) {
    FlashBlock b;
    b.first = int32_t(i);
    b.seq = a.seq[plan.tokens[size_t(i)]];
    while (i < a.n && b.count < per_block && a.seq[plan.tokens[size_t(i)]] == b.seq) {
      b.ctx = std::max<int64_t>(b.ctx, int64_t(a.pos[plan.tokens[size_t(i)]]) + 1);
      ++b.count;
      ++i;
    }
    plan.blocks.push_back(b);
  }
  std::stable_sort(plan.blocks.begin(), plan.blocks.end(),
                   [](const FlashBlock& x, const FlashBlock& y) { return x.ctx > y.ctx; });
  return plan;
}

bool flash_worth_it(const AttentionArgs& a) {
  std::unordered_map<int32_t, int> seen;
  for (int64_t i = 0; i < a.n; ++i) {
    if (++seen[a.seq[i]] >= 2) return true;
  }
  return false;
}

}  // namespace mixtile
