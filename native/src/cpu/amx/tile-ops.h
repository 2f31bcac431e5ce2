// Internal to native/src/cpu/amx: the six AMX tile operations the kernels use, as macros over
// the intrinsics, or (MIXTILE_AMX_EMULATE, for testing the kernels' indexing on CPUs without
// AMX) over a scalar model of the eight 16 x 64-byte tile registers.
#pragma once
#include <cstdint>

#ifndef MIXTILE_AMX_EMULATE
#include <immintrin.h>
#define TILE_LOAD(t, ptr, stride) _tile_loadd(t, ptr, stride)
#define TILE_STORE(t, ptr, stride) _tile_stored(t, ptr, stride)
#define TILE_ZERO(t) _tile_zero(t)
#define TILE_DPBF16PS(c, a, b) _tile_dpbf16ps(c, a, b)
#define TILE_DPBSSD(c, a, b) _tile_dpbssd(c, a, b)
#define TILE_DPBSUD(c, a, b) _tile_dpbsud(c, a, b)
#else
#include <cstring>
namespace mixtile::amx::emu {
// Tile registers and their configured shapes (rows, bytes per row), as ldtilecfg sets them.
struct Tiles {
  alignas(64) uint8_t t[8][16][64];
  int rows[8] = {16, 16, 16, 16, 16, 16, 16, 16};
  int colsb[8] = {64, 64, 64, 64, 64, 64, 64, 64};
};
inline thread_local Tiles tiles;
// ldtilecfg: sets the shapes and zeroes every tile.
inline void config(const uint8_t* rows, const uint16_t* colsb) {
  for (int t = 0; t < 8; ++t) {
    tiles.rows[t] = rows[t];
    tiles.colsb[t] = colsb[t];
  }
  std::memset(tiles.t, 0, sizeof tiles.t);
}
// Loads and stores move rows x colsb bytes; bytes past colsb in a row read as zero.
inline void load(int t, const void* p, long stride) {
  std::memset(tiles.t[t], 0, sizeof tiles.t[t]);
  for (int r = 0; r < tiles.rows[t]; ++r)
    std::memcpy(tiles.t[t][r], static_cast<const uint8_t*>(p) + r * stride, size_t(tiles.colsb[t]));
}
inline void store(int t, void* p, long stride) {
  for (int r = 0; r < tiles.rows[t]; ++r)
    std::memcpy(static_cast<uint8_t*>(p) + r * stride, tiles.t[t][r], size_t(tiles.colsb[t]));
}
inline void zero(int t) { std::memset(tiles.t[t], 0, sizeof tiles.t[t]); }
inline float bf(const uint8_t* p) {
  uint32_t b = uint32_t(p[0] | p[1] << 8) << 16;
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
// Shapes the hardware requires (else #UD): A rows = C rows, A bytes = 4 x B rows, B bytes = C bytes.
inline void check_shapes(int c, int a, int b) {
  if (tiles.rows[a] != tiles.rows[c] || tiles.colsb[a] != 4 * tiles.rows[b] || tiles.colsb[b] != tiles.colsb[c])
    __builtin_trap();
}
// TDPBF16PS: C[m][n] += sum_k A[m][2k+j] * B[k][2n+j] (F32 accumulate), k < B rows.
inline void dpbf16ps(int c, int a, int b) {
  check_shapes(c, a, b);
  for (int m = 0; m < tiles.rows[c]; ++m)
    for (int n = 0; n < tiles.colsb[c] / 4; ++n) {
      float acc;
      std::memcpy(&acc, &tiles.t[c][m][4 * n], 4);
      for (int k = 0; k < tiles.rows[b]; ++k)
        for (int j = 0; j < 2; ++j) acc += bf(&tiles.t[a][m][4 * k + 2 * j]) * bf(&tiles.t[b][k][4 * n + 2 * j]);
      std::memcpy(&tiles.t[c][m][4 * n], &acc, 4);
    }
}
// TDPBSSD / TDPBSUD: C[m][n] += sum_k A[m][4k+j] * B[k][4n+j] (A signed; B signed, or unsigned weight bytes
// for TDPBSUD; int32 accumulate), k < B rows.
template <bool B_SIGNED>
inline void dp_int8(int c, int a, int b) {
  check_shapes(c, a, b);
  for (int m = 0; m < tiles.rows[c]; ++m)
    for (int n = 0; n < tiles.colsb[c] / 4; ++n) {
      int32_t acc;
      std::memcpy(&acc, &tiles.t[c][m][4 * n], 4);
      for (int k = 0; k < tiles.rows[b]; ++k)
        for (int j = 0; j < 4; ++j) {
          const uint8_t bv = tiles.t[b][k][4 * n + j];
          acc += int32_t(int8_t(tiles.t[a][m][4 * k + j])) * (B_SIGNED ? int32_t(int8_t(bv)) : int32_t(bv));
        }
      std::memcpy(&tiles.t[c][m][4 * n], &acc, 4);
    }
}
inline void dpbssd(int c, int a, int b) { dp_int8<true>(c, a, b); }
inline void dpbsud(int c, int a, int b) { dp_int8<false>(c, a, b); }
}  // namespace mixtile::amx::emu
#define TILE_LOAD(t, ptr, stride) ::mixtile::amx::emu::load(t, ptr, stride)
#define TILE_STORE(t, ptr, stride) ::mixtile::amx::emu::store(t, ptr, stride)
#define TILE_ZERO(t) ::mixtile::amx::emu::zero(t)
#define TILE_DPBF16PS(c, a, b) ::mixtile::amx::emu::dpbf16ps(c, a, b)
#define TILE_DPBSSD(c, a, b) ::mixtile::amx::emu::dpbssd(c, a, b)
#define TILE_DPBSUD(c, a, b) ::mixtile::amx::emu::dpbsud(c, a, b)
#endif
