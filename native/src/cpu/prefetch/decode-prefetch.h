// Which decode prefetch hints run (pool_prefetch: idle pool workers pull the next GEMV's weights
// on-chip while the calling thread does serial work or other workers finish a job's tail):
//   o_proj  the attention output projection, during the attention core
//   qkv     the next layer's q/k/v projections, during the MoE half
//   down    the routed experts' down rows, during the gate/up job's tail
// MIXTILE_DECODE_PREFETCH: a comma list of these, "all" (default) or "off" (A/B timing).
#pragma once

namespace mixtile {

enum class DecodePrefetch : unsigned { o_proj = 1, qkv = 2, down = 4 };

bool decode_prefetch_on(DecodePrefetch what);

// Calls of at most this many tokens (decode batches) post the hints.
constexpr long DECODE_PREFETCH_MAX_TOKENS = 8;

}  // namespace mixtile
