// Scale helpers shared by the Q4_K / Q5_K kernels (row kernels and token lanes): the 8 six-bit
// scales and mins of a super-block (ggml get_scale_min_k4, all at once), and the int16 lane ->
// sub-block tables the row kernels use after packs_epi32. Plain C++: any ISA file may include it.
// Internal linkage on purpose: each kernel file is compiled with its own ISA flags, and a shared
// inline definition could be merged at link time into a copy built for a wider ISA.
#pragma once
#include <cstdint>
#include <cstring>

namespace mixtile {
namespace {

// out as bytes: [0..7] = the sub-block scales sc_j, [8..15] = the mins m_j.
inline void unpack_q4k_scales(const uint8_t* s, uint32_t out[4]) {
  const uint32_t kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
  uint32_t u[3];
  std::memcpy(u, s, 12);
  out[3] = ((u[2] >> 4) & kmask2) | (((u[1] >> 6) & kmask3) << 4);
  out[2] = u[1] & kmask1;
  out[1] = (u[2] & kmask2) | (((u[0] >> 6) & kmask3) << 4);
  out[0] = u[0] & kmask1;
}

// int16 lane -> sub-block index after packs_epi32(p0, p1): 128-bit lane L holds
// [p0 lanes 4L..4L+3 | p1 lanes 4L..4L+3]; p0 lanes 0-7 = sub-block 0, 8-15 = 1; p1: 2, 3.
alignas(64) const int16_t Q4K_SCALE_IDX01[32] = {0, 0, 0, 0, 2, 2, 2, 2, 0, 0, 0, 0, 2, 2, 2, 2,
                                                 1, 1, 1, 1, 3, 3, 3, 3, 1, 1, 1, 1, 3, 3, 3, 3};
alignas(64) const int16_t Q4K_SCALE_IDX23[32] = {4, 4, 4, 4, 6, 6, 6, 6, 4, 4, 4, 4, 6, 6, 6, 6,
                                                 5, 5, 5, 5, 7, 7, 7, 7, 5, 5, 5, 5, 7, 7, 7, 7};

}  // namespace
}  // namespace mixtile
