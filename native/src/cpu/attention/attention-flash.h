// Work plan of the flash attention entries (attention-flash-*.cc): the batch's tokens grouped by
// sequence and cut into query blocks whose rows ((token, query head of one GQA group) pairs)
// fill one task's tiles. When blocks x KV heads give the pool too few tasks (decode or a short
// chunk deep into the cache), each block's KV range is split and the partial softmax results
// merged (flash decoding). ISA-independent so every entry and the tests share it.
#pragma once
#include <cstdint>
#include <vector>

#include "cpu/attention/attention.h"

namespace mixtile {

// Rows (token x group head) of one block: the tiles' width (4 vectors of 16 floats).
constexpr int FLASH_MAX_ROWS = 64;
// Fewest KV positions per split (a multiple of the entries' 64-position tiles).
constexpr int64_t FLASH_MIN_SPLIT = 256;

struct FlashBlock {
  int32_t first = 0;  // index into FlashPlan::tokens
  int32_t count = 0;  // tokens in the block (count * group <= FLASH_MAX_ROWS)
  int32_t seq = 0;
  int64_t ctx = 0;    // KV positions the block reads: max position + 1
};

struct FlashPlan {
  std::vector<int32_t> tokens;     // batch indices, grouped by sequence (batch order kept inside)
  std::vector<FlashBlock> blocks;  // longest ctx first, so dynamic hand-out balances causal blocks
  int splits = 1;                  // KV ranges per (block, KV head)
  // Positions [begin, end) of split s of block b (end <= begin when that split is empty).
  int64_t split_begin(const FlashBlock& b, int s) const;
  int64_t split_end(const FlashBlock& b, int s) const;
};

// The plan for `a` on a pool of `threads`.
FlashPlan flash_plan(const AttentionArgs& a, int threads);

// Whether the flash entries take `a` on `threads`: some sequence brings 2+ tokens (prefill), or a
// decode batch of 256+ positions whose (token, KV head) tasks fill the pool, or one deep enough to
// split its KV ranges; other decode batches keep the per-token entry.
bool flash_worth_it(const AttentionArgs& a, int threads);

// A split's unnormalized result for one block and KV head: o [rows][head_dim] (row r = token
// r / group, head r % group), running max m and sum l per row.
struct FlashPartial {
  float* o;
  float* m;
  float* l;
};

// Runs fn(block, kv head, split, partial-or-null) for every task of `plan` on the pool, then, when
// the plan splits, merges each (block, KV head)'s partials into a.out.
void flash_run(const AttentionArgs& a, const FlashPlan& plan,
               const std::function<void(const FlashBlock&, int kvh, int64_t begin, int64_t end, FlashPartial*)>& fn);

}  // namespace mixtile
