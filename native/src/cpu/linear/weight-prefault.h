// Maps a weight's pages into the page tables at load, as llama.cpp's MAP_POPULATE does. Without
// it a decode token takes minor page faults on every expert page it touches for the first time:
// on the 48-layer Q4_K_M file (17.3 GiB) RSS was still 12.9 GiB after 100 tokens, and random
// 1 MiB reads over the mapped file ran at 8-10 GB/s unpopulated vs 15-18 GB/s populated (2 threads,
// dev box). Pages not yet in the page cache are read now instead of at the first token.
#pragma once
#include "tensor.h"

namespace mixtile {

// MADV_POPULATE_READ over w's bytes (a no-op for pages already mapped, e.g. native buffers).
// Stops populating once the total passes 3/4 of physical RAM (a model larger than memory would
// only evict its own pages) and when MIXTILE_PREFAULT=0. Never throws; errors leave pages lazy.
void weight_prefault(const Weight& w);

}  // namespace mixtile
