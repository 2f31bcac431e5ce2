// Q4K panel kernels (layout amx.h, contract kernels.h): AMX-INT8 tiles over the nibbles unpacked
// to an L1 staging buffer, and the AVX-512 VNNI path over the packed nibbles for experts with few
// tokens. Compiled with AMX flags; only called once amx::available() said yes.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "cpu/amx/kernels.h"
#include "cpu/amx/tile-ops.h"

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
        TILE_ZERO(0);
        TILE_ZERO(1);
        TILE_ZERO(2);
        TILE_ZERO(3);
        TILE_LOAD(4, a0 + ks * kInt8Step, lda);
        TILE_LOAD(5, a0 + ks * kInt8Step + 32, lda);
        TILE_LOAD(6, bp, 64);                    // tile0 quads 0-7 (group 2ks)
        TILE_LOAD(7, bp + kTileBytes, 64);       // tile1 quads 0-7
        TILE_DPBSSD(0, 4, 6);
        TILE_DPBSSD(1, 4, 7);
        TILE_LOAD(6, bp + 512, 64);               // tile0 quads 8-15 (group 2ks + 1)
        TILE_LOAD(7, bp + kTileBytes + 512, 64);  // tile1 quads 8-15
        TILE_DPBSSD(2, 5, 6);
        TILE_DPBSSD(3, 5, 7);
        TILE_STORE(0, S[0], 128);
        TILE_STORE(1, S[0] + 16, 128);
        TILE_STORE(2, S[1], 128);
        TILE_STORE(3, S[1] + 16, 128);
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
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  for (int m = 0; m < mr; m += 4) {
    __m512 acc[4][2];
    for (auto& r : acc) r[0] = r[1] = _mm512_setzero_ps();
    const int8_t* a = A + int64_t(m) * lda;
    for (int64_t ks = 0; ks < k_steps; ++ks) {
      const uint8_t* bp = panel + ks * kQ4StepBytes;
      if (m == 0) prefetch_q4(bp);
      const int8_t* ak = a + ks * kInt8Step;
      __m512i ai[2][4][2];  // [group half][row][column tile]
      for (auto& h : ai)
        for (auto& r : h) r[0] = r[1] = _mm512_setzero_si512();
      for (int kq = 0; kq < 8; ++kq) {
        const __m512i p0 = _mm512_load_si512(bp + kq * 64);
        const __m512i p1 = _mm512_load_si512(bp + kQ4TileBytes + kq * 64);
        const __m512i lo0 = _mm512_and_si512(p0, m4), hi0 = _mm512_and_si512(_mm512_srli_epi16(p0, 4), m4);
        const __m512i lo1 = _mm512_and_si512(p1, m4), hi1 = _mm512_and_si512(_mm512_srli_epi16(p1, 4), m4);
        for (int i = 0; i < 4; ++i) {
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

void group_sums_int8(const int8_t* q, int64_t k_pad, int group, int32_t* sums) {
  for (int64_t g = 0; g < k_pad / group; ++g) {
    int32_t s = 0;
    for (int i = 0; i < group; ++i) s += q[g * group + i];
    sums[g] = s;
  }
}

}  // namespace mixtile::amx
