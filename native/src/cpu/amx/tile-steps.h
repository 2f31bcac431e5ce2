// Internal to the AMX-INT8 kernel files (compiled with AMX flags): tile sequences that more than one kernel runs.
#pragma once
#include <cstdint>

#include "cpu/amx/kernels.h"
#include "cpu/amx/tile-ops.h"

namespace mixtile::amx {

// One K step of a 16-row block in half-K tiles (TileShape::half_k): A's low and high 32 K (tiles 4, 5) times the
// two column tiles' quads 0-7 and 8-15 of `b` (column tile 1 kTileBytes after tile 0), each half's int32 sums
// stored 32 columns wide to s_lo / s_hi. Group-32 INT8 panels and the unpacked Q4K stage share this layout.
inline void tile_step_half_k(const int8_t* a, int64_t lda, const void* b, int32_t* s_lo, int32_t* s_hi) {
  const auto* bp = static_cast<const uint8_t*>(b);
  TILE_ZERO(0);
  TILE_ZERO(1);
  TILE_ZERO(2);
  TILE_ZERO(3);
  TILE_LOAD(4, a, lda);
  TILE_LOAD(5, a + 32, lda);
  TILE_LOAD(6, bp, 64);                    // tile0 quads 0-7 (the low 32 K)
  TILE_LOAD(7, bp + kTileBytes, 64);       // tile1 quads 0-7
  TILE_DPBSSD(0, 4, 6);
  TILE_DPBSSD(1, 4, 7);
  TILE_LOAD(6, bp + 512, 64);               // tile0 quads 8-15 (the high 32 K)
  TILE_LOAD(7, bp + kTileBytes + 512, 64);  // tile1 quads 8-15
  TILE_DPBSSD(2, 5, 6);
  TILE_DPBSSD(3, 5, 7);
  TILE_STORE(0, s_lo, 4 * kPanelCols);
  TILE_STORE(1, s_lo + 16, 4 * kPanelCols);
  TILE_STORE(2, s_hi, 4 * kPanelCols);
  TILE_STORE(3, s_hi + 16, 4 * kPanelCols);
}

}  // namespace mixtile::amx
