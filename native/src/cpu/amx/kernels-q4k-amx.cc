// Q4K panel kernels (layout amx.h, contract kernels.h): AMX-INT8 tiles over the nibbles unpacked
// to an L1 staging buffer, and the AVX-512 VNNI path over the packed nibbles for experts with few
// tokens. Compiled with AMX flags; only called once amx::available() said yes.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "cpu/amx/kernels.h"
#include "cpu/amx/tile-ops.h"
#include "cpu/amx/tile-steps.h"

namespace mixtile::amx {

namespace {

constexpr int kQ4BlockSteps = 4;  // K steps unpacked at a time: 8 KiB of staging, reused by every 16-row block
constexpr int kQ4PrefetchSteps = 8;  // prefetch (to L2) the packed panel 8 steps = 8 KiB ahead

inline void prefetch_q4(const uint8_t* bp) {
  const char* p = reinterpret_cast<const char*>(bp) + kQ4PrefetchSteps * kQ4StepBytes;
  for (int l = 0; l < int(kQ4StepBytes / 64); ++l) _mm_prefetch(p + l * 64, _MM_HINT_T1);
}

// Float scales of one 32-K group for the panel's 32 columns: d*sc (lanes 0-15, 16-31), dmin*m.
struct GroupScales {
  __m512 dsc0, dsc1, dmm0, dmm1;
};
inline GroupScales group_scales(const uint8_t* sm, const float* dd, int64_t g) {
  const uint8_t* s = sm + g * 64;
  const float* d = dd + (g / 8) * 64;
  auto u8 = [](const uint8_t* p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  };
  return {_mm512_mul_ps(u8(s), _mm512_loadu_ps(d)), _mm512_mul_ps(u8(s + 16), _mm512_loadu_ps(d + 16)),
          _mm512_mul_ps(u8(s + 32), _mm512_loadu_ps(d + 32)), _mm512_mul_ps(u8(s + 48), _mm512_loadu_ps(d + 48))};
}

// One row, one group: c += a_scale * (d*sc * S - dmin*m * a_sum). Both kernels call this, so the
// float steps are the same instructions in the same order.
inline void scale_row(__m512i s0, __m512i s1, float a_scale, int32_t a_sum, const GroupScales& gs, __m512& c0,
                      __m512& c1) {
  const __m512 as = _mm512_set1_ps(a_scale), sum = _mm512_set1_ps(float(a_sum));
  const __m512 t0 = _mm512_fnmadd_ps(gs.dmm0, sum, _mm512_mul_ps(_mm512_cvtepi32_ps(s0), gs.dsc0));
  const __m512 t1 = _mm512_fnmadd_ps(gs.dmm1, sum, _mm512_mul_ps(_mm512_cvtepi32_ps(s1), gs.dsc1));
  c0 = _mm512_fmadd_ps(t0, as, c0);
  c1 = _mm512_fmadd_ps(t1, as, c1);
}

// One packed K step (1 KiB) -> its INT8-layout 2 KiB: per tile, low nibbles = bytes 0-511 (quads
// 0-7), high nibbles = bytes 512-1023 (quads 8-15).
inline void unpack_step(const uint8_t* src, int8_t* dst) {
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  for (int t = 0; t < 2; ++t)
    for (int c = 0; c < int(kQ4TileBytes / 64); ++c) {
      const __m512i v = _mm512_load_si512(src + t * kQ4TileBytes + c * 64);
      int8_t* o = dst + t * kTileBytes + c * 64;
      _mm512_store_si512(o, _mm512_and_si512(v, m4));
      _mm512_store_si512(o + 512, _mm512_and_si512(_mm512_srli_epi16(v, 4), m4));
    }
}

// One K step of the AVX-512 paths over a Q4K panel: the step's nibbles (two column tiles of 16; low nibbles the
// first 32 K of the step, high the next 32) times R activation rows, int32 sums into ai[half][row][tile].
template <int R>
inline void q4_step_dots(const uint8_t* bp, const int8_t* ak, int64_t lda, __m512i (&ai)[2][R][2]) {
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  for (auto& h : ai)
    for (auto& r : h) r[0] = r[1] = _mm512_setzero_si512();
  for (int kq = 0; kq < 8; ++kq) {
    const __m512i p0 = _mm512_load_si512(bp + kq * 64);
    const __m512i p1 = _mm512_load_si512(bp + kQ4TileBytes + kq * 64);
    const __m512i lo0 = _mm512_and_si512(p0, m4), hi0 = _mm512_and_si512(_mm512_srli_epi16(p0, 4), m4);
    const __m512i lo1 = _mm512_and_si512(p1, m4), hi1 = _mm512_and_si512(_mm512_srli_epi16(p1, 4), m4);
    for (int i = 0; i < R; ++i) {
      int32_t ql, qh;
      std::memcpy(&ql, ak + i * lda + 4 * kq, 4);
      std::memcpy(&qh, ak + i * lda + 32 + 4 * kq, 4);
      const __m512i xl = _mm512_set1_epi32(ql), xh = _mm512_set1_epi32(qh);
      ai[0][i][0] = _mm512_dpbusd_epi32(ai[0][i][0], lo0, xl);
      ai[0][i][1] = _mm512_dpbusd_epi32(ai[0][i][1], lo1, xl);
      ai[1][i][0] = _mm512_dpbusd_epi32(ai[1][i][0], hi0, xh);
      ai[1][i][1] = _mm512_dpbusd_epi32(ai[1][i][1], hi1, xh);
    }
  }
}

}  // namespace

void panel_q4k_amx(const int8_t* A, int64_t lda, const float* a_scale, const int32_t* a_sum, int mrows,
                   const uint8_t* panel, const uint8_t* sm, const float* dd, int64_t n_groups, float* C) {
  tile_config_thread(TileShape::half_k);
  const int mt = (mrows + 15) / 16;
  std::memset(C, 0, sizeof(float) * size_t(mt) * 16 * kPanelCols);
  alignas(64) int8_t stage[kQ4BlockSteps][2 * kTileBytes];
  alignas(64) int32_t S[2][16 * kPanelCols];
  GroupScales gs[2 * kQ4BlockSteps];
  const int64_t k_steps = n_groups / 2;
  for (int64_t k0 = 0; k0 < k_steps; k0 += kQ4BlockSteps) {
    const int64_t k1 = std::min<int64_t>(k_steps, k0 + kQ4BlockSteps);
    for (int64_t ks = k0; ks < k1; ++ks) {
      const uint8_t* bp = panel + ks * kQ4StepBytes;
      prefetch_q4(bp);
      unpack_step(bp, stage[ks - k0]);
      gs[2 * (ks - k0)] = group_scales(sm, dd, 2 * ks);
      gs[2 * (ks - k0) + 1] = group_scales(sm, dd, 2 * ks + 1);
    }
    for (int m = 0; m < mt; ++m) {
      const int8_t* a0 = A + int64_t(m) * 16 * lda;
      const int rows = std::min(mrows - m * 16, 16);
      float* c = C + int64_t(m) * 16 * kPanelCols;
      const int64_t r0 = int64_t(m) * 16 * n_groups;
      for (int64_t ks = k0; ks < k1; ++ks) {
        const int8_t* bp = stage[ks - k0];
        tile_step_half_k(a0 + ks * kInt8Step, lda, bp, S[0], S[1]);
        const GroupScales& lo = gs[2 * (ks - k0)];
        const GroupScales& hi = gs[2 * (ks - k0) + 1];
        for (int r = 0; r < rows; ++r) {
          float* cr = c + r * kPanelCols;
          const int64_t ai = r0 + r * n_groups + 2 * ks;
          __m512 c0 = _mm512_load_ps(cr), c1 = _mm512_load_ps(cr + 16);
          scale_row(_mm512_load_si512(S[0] + r * kPanelCols), _mm512_load_si512(S[0] + r * kPanelCols + 16),
                    a_scale[ai], a_sum[ai], lo, c0, c1);
          scale_row(_mm512_load_si512(S[1] + r * kPanelCols), _mm512_load_si512(S[1] + r * kPanelCols + 16),
                    a_scale[ai + 1], a_sum[ai + 1], hi, c0, c1);
          _mm512_store_ps(cr, c0);
          _mm512_store_ps(cr + 16, c1);
        }
      }
    }
  }
}

// 4 rows x 32 columns per pass. One 64-byte load of a packed tile gives K quad kq (low nibbles,
// group 2ks) and kq + 8 (high nibbles, group 2ks + 1) for 16 columns; vpdpbusd takes the nibbles
// as its unsigned operand and the broadcast activation quad as the signed one (no offset).
void panel_q4k_avx512(const int8_t* A, int64_t lda, const float* a_scale, const int32_t* a_sum, int mrows,
                      const uint8_t* panel, const uint8_t* sm, const float* dd, int64_t n_groups, float* C) {
  const int mr = (mrows + 3) & ~3;
  const int64_t k_steps = n_groups / 2;
  for (int m = 0; m < mr; m += 4) {
    __m512 acc[4][2];
    for (auto& r : acc) r[0] = r[1] = _mm512_setzero_ps();
    const int8_t* a = A + int64_t(m) * lda;
    for (int64_t ks = 0; ks < k_steps; ++ks) {
      const uint8_t* bp = panel + ks * kQ4StepBytes;
      if (m == 0) prefetch_q4(bp);
      const int8_t* ak = a + ks * kInt8Step;
      __m512i ai[2][4][2];  // [group half][row][column tile]
      q4_step_dots<4>(bp, ak, lda, ai);
      const GroupScales lo = group_scales(sm, dd, 2 * ks), hi = group_scales(sm, dd, 2 * ks + 1);
      for (int i = 0; i < 4; ++i) {
        const int64_t gi = int64_t(m + i) * n_groups + 2 * ks;
        scale_row(ai[0][i][0], ai[0][i][1], a_scale[gi], a_sum[gi], lo, acc[i][0], acc[i][1]);
        scale_row(ai[1][i][0], ai[1][i][1], a_scale[gi + 1], a_sum[gi + 1], hi, acc[i][0], acc[i][1]);
      }
    }
    for (int i = 0; i < 4; ++i) {
      _mm512_storeu_ps(C + (m + i) * kPanelCols, acc[i][0]);
      _mm512_storeu_ps(C + (m + i) * kPanelCols + 16, acc[i][1]);
    }
  }
}

namespace {

// One group's 6-bit per-column values (16 bytes, columns of one B tile) as a VNNI-row byte pattern:
// each column's byte repeated over its 4 K bytes.
inline __m512i col_pattern(const uint8_t* v16) {
  const __m512i x = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(v16)));
  return _mm512_mullo_epi32(x, _mm512_set1_epi32(0x01010101));
}

// q (bytes 0..15) x s (bytes 0..63) <= 945, bytewise: the low byte and the high part (0..3) as bytes.
inline void mul_split(__m512i q, __m512i s, __m512i& lo, __m512i& hi) {
  const __m512i m8 = _mm512_set1_epi16(0x00FF);
  const __m512i pe = _mm512_mullo_epi16(_mm512_and_si512(q, m8), _mm512_and_si512(s, m8));
  const __m512i po = _mm512_mullo_epi16(_mm512_srli_epi16(q, 8), _mm512_srli_epi16(s, 8));
  lo = _mm512_or_si512(_mm512_and_si512(pe, m8), _mm512_slli_epi16(po, 8));
  hi = _mm512_or_si512(_mm512_srli_epi16(pe, 8), _mm512_andnot_si512(m8, po));
}

constexpr int kFoldTiles = 6;  // B tiles a K step: q*sc low bytes (tile0, tile1), high parts, mins m
constexpr size_t kFoldStepBytes = kFoldTiles * kTileBytes;

// One packed K step -> its six B tiles [lo0 lo1 hi0 hi1 m0 m1] (INT8 tile layout, unsigned bytes):
// rows 0-7 carry group 2ks, rows 8-15 group 2ks + 1, so each row's values use that group's sc / m.
inline void stage_folded(const uint8_t* src, const uint8_t* sm, int64_t ks, uint8_t* dst) {
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  for (int t = 0; t < 2; ++t) {
    const uint8_t* g0 = sm + 2 * ks * 64 + 16 * t;
    const uint8_t* g1 = g0 + 64;
    const __m512i sc0 = col_pattern(g0), sc1 = col_pattern(g1), mn0 = col_pattern(g0 + 32), mn1 = col_pattern(g1 + 32);
    uint8_t* lo_t = dst + t * kTileBytes;
    uint8_t* hi_t = dst + (2 + t) * kTileBytes;
    uint8_t* m_t = dst + (4 + t) * kTileBytes;
    for (int c = 0; c < int(kQ4TileBytes / 64); ++c) {
      const __m512i v = _mm512_load_si512(src + t * kQ4TileBytes + c * 64);
      __m512i lo, hi;
      mul_split(_mm512_and_si512(v, m4), sc0, lo, hi);
      _mm512_store_si512(lo_t + c * 64, lo);
      _mm512_store_si512(hi_t + c * 64, hi);
      mul_split(_mm512_and_si512(_mm512_srli_epi16(v, 4), m4), sc1, lo, hi);
      _mm512_store_si512(lo_t + 512 + c * 64, lo);
      _mm512_store_si512(hi_t + 512 + c * 64, hi);
      _mm512_store_si512(m_t + c * 64, mn0);
      _mm512_store_si512(m_t + 512 + c * 64, mn1);
    }
  }
}

// d and dmin of one super-block for the panel's 32 columns.
struct SuperScales {
  __m512 d0, d1, dm0, dm1;
};
inline SuperScales super_scales(const float* dd, int64_t sb) {
  const float* d = dd + sb * 64;
  return {_mm512_loadu_ps(d), _mm512_loadu_ps(d + 16), _mm512_loadu_ps(d + 32), _mm512_loadu_ps(d + 48)};
}

// One row, one activation group: c += a_scale * (d * S - dmin * M), S = sum x*q*sc, M = sum x*m.
// Both folded kernels call this (same float steps, same order).
inline void folded_row(__m512i s0, __m512i s1, __m512i m0, __m512i m1, float a_scale, const SuperScales& ss,
                       __m512& c0, __m512& c1) {
  const __m512 as = _mm512_set1_ps(a_scale);
  const __m512 t0 = _mm512_fnmadd_ps(ss.dm0, _mm512_cvtepi32_ps(m0), _mm512_mul_ps(_mm512_cvtepi32_ps(s0), ss.d0));
  const __m512 t1 = _mm512_fnmadd_ps(ss.dm1, _mm512_cvtepi32_ps(m1), _mm512_mul_ps(_mm512_cvtepi32_ps(s1), ss.d1));
  c0 = _mm512_fmadd_ps(t0, as, c0);
  c1 = _mm512_fmadd_ps(t1, as, c1);
}

}  // namespace

void panel_q4k_folded_amx(const int8_t* A, int64_t lda, const float* a_scale, const int32_t* a_sum, int act_group,
                          int mrows, const uint8_t* panel, const uint8_t* sm, const float* dd, int64_t n_groups,
                          float* C) {
  (void)a_sum;
  tile_config_thread(TileShape::full);
  const int mt = (mrows + 15) / 16;
  std::memset(C, 0, sizeof(float) * size_t(mt) * 16 * kPanelCols);
  const int gsteps = act_group / kInt8Step;
  alignas(64) uint8_t stage[4][kFoldStepBytes];  // up to 4 K steps (act_group 256): 24 KiB
  alignas(64) int32_t S[kFoldTiles][16 * 16];
  const int64_t k_steps = n_groups / 2;
  for (int64_t k0 = 0; k0 < k_steps; k0 += gsteps) {
    for (int64_t ks = k0; ks < k0 + gsteps; ++ks) {
      prefetch_q4(panel + ks * kQ4StepBytes);
      stage_folded(panel + ks * kQ4StepBytes, sm, ks, stage[ks - k0]);
    }
    const SuperScales ss = super_scales(dd, k0 * kInt8Step / 256);
    for (int m = 0; m < mt; ++m) {
      const int8_t* a0 = A + int64_t(m) * 16 * lda;
      const int rows = std::min(mrows - m * 16, 16);
      float* c = C + int64_t(m) * 16 * kPanelCols;
      TILE_ZERO(0);
      TILE_ZERO(1);
      TILE_ZERO(2);
      TILE_ZERO(3);
      TILE_ZERO(4);
      TILE_ZERO(5);
      for (int64_t ks = k0; ks < k0 + gsteps; ++ks) {
        const uint8_t* bp = stage[ks - k0];
        TILE_LOAD(6, a0 + ks * kInt8Step, lda);
        TILE_LOAD(7, bp, 64);
        TILE_DPBSUD(0, 6, 7);
        TILE_LOAD(7, bp + kTileBytes, 64);
        TILE_DPBSUD(1, 6, 7);
        TILE_LOAD(7, bp + 2 * kTileBytes, 64);
        TILE_DPBSUD(2, 6, 7);
        TILE_LOAD(7, bp + 3 * kTileBytes, 64);
        TILE_DPBSUD(3, 6, 7);
        TILE_LOAD(7, bp + 4 * kTileBytes, 64);
        TILE_DPBSUD(4, 6, 7);
        TILE_LOAD(7, bp + 5 * kTileBytes, 64);
        TILE_DPBSUD(5, 6, 7);
      }
      TILE_STORE(0, S[0], 64);
      TILE_STORE(1, S[1], 64);
      TILE_STORE(2, S[2], 64);
      TILE_STORE(3, S[3], 64);
      TILE_STORE(4, S[4], 64);
      TILE_STORE(5, S[5], 64);
      for (int r = 0; r < rows; ++r) {
        float* cr = c + r * kPanelCols;
        __m512 c0 = _mm512_load_ps(cr), c1 = _mm512_load_ps(cr + 16);
        const __m512i s0 = _mm512_add_epi32(_mm512_load_si512(S[0] + r * 16), _mm512_slli_epi32(_mm512_load_si512(S[2] + r * 16), 8));
        const __m512i s1 = _mm512_add_epi32(_mm512_load_si512(S[1] + r * 16), _mm512_slli_epi32(_mm512_load_si512(S[3] + r * 16), 8));
        folded_row(s0, s1, _mm512_load_si512(S[4] + r * 16), _mm512_load_si512(S[5] + r * 16),
                   a_scale[(int64_t(m) * 16 + r) * n_groups + 2 * k0], ss, c0, c1);
        _mm512_store_ps(cr, c0);
        _mm512_store_ps(cr + 16, c1);
      }
    }
  }
}

// 2 rows x 32 columns per pass: per-group int32 sums as the per-32 path makes them, then the
// integer fold sum_g sc_g S_g and sum_g m_g a_sum_g (vpmulld: exact, the AMX kernel's S and M).
void panel_q4k_folded_avx512(const int8_t* A, int64_t lda, const float* a_scale, const int32_t* a_sum,
                             int act_group, int mrows, const uint8_t* panel, const uint8_t* sm, const float* dd,
                             int64_t n_groups, float* C) {
  const int mr = (mrows + 3) & ~3;
  const int gsteps = act_group / kInt8Step;
  const int64_t k_steps = n_groups / 2;
  auto u8x16 = [](const uint8_t* p) { return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); };
  for (int m = 0; m < mr; m += 2) {
    __m512 acc[2][2];
    for (auto& r : acc) r[0] = r[1] = _mm512_setzero_ps();
    const int8_t* a = A + int64_t(m) * lda;
    for (int64_t k0 = 0; k0 < k_steps; k0 += gsteps) {
      __m512i st[2][2], mt[2][2];  // [row][column tile]
      for (int i = 0; i < 2; ++i) st[i][0] = st[i][1] = mt[i][0] = mt[i][1] = _mm512_setzero_si512();
      for (int64_t ks = k0; ks < k0 + gsteps; ++ks) {
        const uint8_t* bp = panel + ks * kQ4StepBytes;
        if (m == 0) prefetch_q4(bp);
        const int8_t* ak = a + ks * kInt8Step;
        __m512i ai[2][2][2];  // [group half][row][column tile]
        q4_step_dots<2>(bp, ak, lda, ai);
        for (int h = 0; h < 2; ++h) {
          const uint8_t* g = sm + (2 * ks + h) * 64;
          const __m512i sc0 = u8x16(g), sc1 = u8x16(g + 16), mn0 = u8x16(g + 32), mn1 = u8x16(g + 48);
          for (int i = 0; i < 2; ++i) {
            const __m512i sum = _mm512_set1_epi32(a_sum[int64_t(m + i) * n_groups + 2 * ks + h]);
            st[i][0] = _mm512_add_epi32(st[i][0], _mm512_mullo_epi32(ai[h][i][0], sc0));
            st[i][1] = _mm512_add_epi32(st[i][1], _mm512_mullo_epi32(ai[h][i][1], sc1));
            mt[i][0] = _mm512_add_epi32(mt[i][0], _mm512_mullo_epi32(sum, mn0));
            mt[i][1] = _mm512_add_epi32(mt[i][1], _mm512_mullo_epi32(sum, mn1));
          }
        }
      }
      const SuperScales ss = super_scales(dd, k0 * kInt8Step / 256);
      for (int i = 0; i < 2; ++i)
        folded_row(st[i][0], st[i][1], mt[i][0], mt[i][1], a_scale[int64_t(m + i) * n_groups + 2 * k0], ss, acc[i][0],
                   acc[i][1]);
    }
    for (int i = 0; i < 2; ++i) {
      _mm512_storeu_ps(C + (m + i) * kPanelCols, acc[i][0]);
      _mm512_storeu_ps(C + (m + i) * kPanelCols + 16, acc[i][1]);
    }
  }
}

void group_sums_int8(const int8_t* q, int64_t k_pad, int group, int32_t* sums) {
  for (int64_t g = 0; g < k_pad / group; ++g) {
    int32_t s = 0;
    for (int i = 0; i < group; ++i) s += q[g * group + i];
    sums[g] = s;
  }
}

}  // namespace mixtile::amx
