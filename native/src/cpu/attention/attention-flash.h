// Work plan of the flash attention entries (attention-flash-*.cc): the batch's tokens grouped by
// sequence and cut into query blocks whose rows ((token, query head of one GQA group) pairs)
// fill one task's tiles. ISA-independent so every entry and the tests share it.
#pragma once
#include <cstdint>
#include <vector>

#include "cpu/attention/attention.h"

namespace mixtile {

// Rows (token x group head) of one block: the tiles' width (4 vectors of 16 floats).
constexpr int FLASH_MAX_ROWS = 64;

struct FlashBlock {
  int32_t first = 0;  // index into FlashPlan::tokens
  int32_t count = 0;  // tokens in the block (count * group <= FLASH_MAX_ROWS)
  int32_t seq = 0;
  int64_t ctx = 0;    // KV positions the block reads: max position + 1
};

struct FlashPlan {
  std::vector<int32_t> tokens;     // batch indices, grouped by sequence (batch order kept inside)
  std::vector<FlashBlock> blocks;  // longest ctx first, so dynamic hand-out balances causal blocks
};

FlashPlan flash_plan(const AttentionArgs& a);

// Whether query blocks would be worth their setup: some sequence has 2 or more tokens in the batch.
// Decode batches (one token per sequence) keep the per-token entry.
bool flash_worth_it(const AttentionArgs& a);

}  // namespace mixtile
