// Panel kernels: AMX-BF16 (TDPBF16PS), AMX-INT8 (TDPBSSD), and the AVX-512 BF16 / VNNI paths
// over the same packed panels (used for experts with few tokens). Compiled with AMX flags; only
// called once amx::available() said yes. Layouts: amx.h; contracts: kernels.h.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "cpu/amx/kernels.h"
#include "cpu/amx/tile-ops.h"
#include "cpu/amx/tile-steps.h"

namespace mixtile::amx {

namespace {
struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};
static_assert(sizeof(TileConfig) == 64, "tile config is 64 bytes");
thread_local int tile_loaded = -1;  // TileShape loaded on this thread, -1: none

// K steps per block in the BF16 kernel: 8 steps = 16 KiB of the panel, which stays in L1 while
// every 32-row block of A runs over it (A streams from L2).
constexpr int kBf16BlockSteps = 8;
}  // namespace

void tile_config_thread(TileShape shape) {
  if (tile_loaded == int(shape)) return;
  TileConfig cfg{};
  cfg.palette_id = 1;
  for (int i = 0; i < 8; ++i) {
    cfg.colsb[i] = 64;
    cfg.rows[i] = 16;
  }
  if (shape == TileShape::half_k) {
    cfg.colsb[4] = cfg.colsb[5] = 32;  // A: 16 rows x 32 K
    cfg.rows[6] = cfg.rows[7] = 8;     // B: 8 quads (32 K) x 16 columns
  }
#ifndef MIXTILE_AMX_EMULATE
  _tile_loadconfig(&cfg);
#else
  emu::config(cfg.rows, cfg.colsb);
#endif
  tile_loaded = int(shape);
}

void tile_probe() {
#ifndef MIXTILE_AMX_EMULATE
  TileConfig cfg{};
  cfg.palette_id = 1;
  for (int i = 0; i < 8; ++i) {
    cfg.colsb[i] = 64;
    cfg.rows[i] = 16;
  }
  _tile_loadconfig(&cfg);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(4);
  _tile_zero(6);
  _tile_dpbf16ps(0, 4, 6);
  _tile_dpbssd(1, 4, 6);
  _tile_release();
#endif
}

// C tiles: tmm0 = rows 0-15 x cols 0-15, tmm1 = rows 0-15 x cols 16-31, tmm2/3 = rows 16-31.
KernelTuning tuning;

namespace {
// Prefetches (into L2) the panel bytes `tuning.prefetch_steps` K steps ahead of bp.
inline void prefetch_ahead(const uint8_t* bp) {
  if (tuning.prefetch_steps <= 0) return;
  const char* p = reinterpret_cast<const char*>(bp) + size_t(tuning.prefetch_steps) * kStepBytes;
  for (int l = 0; l < int(kStepBytes / 64); ++l) _mm_prefetch(p + l * 64, _MM_HINT_T1);
}
}  // namespace

void panel_bf16_amx(const uint16_t* A, int64_t lda, int mrows, const uint8_t* panel, int64_t k_steps, float* C) {
  tile_config_thread();
  const int mt = (mrows + 15) / 16;
  const long sa = long(lda) * 2;
  // One row pair gains nothing from K blocking (B is used once): run the whole K in one block.
  const int64_t kblk = mt <= 2 && tuning.single_pair_unblocked ? k_steps : kBf16BlockSteps;
  for (int64_t k0 = 0; k0 < k_steps; k0 += kblk) {
    const int64_t k1 = std::min<int64_t>(k_steps, k0 + kblk);
    for (int m = 0; m < mt; m += 2) {
      const bool first = m == 0;
      float* c = C + int64_t(m) * 16 * kPanelCols;
      const uint16_t* a0 = A + int64_t(m) * 16 * lda;
      if (m + 1 < mt) {
        const uint16_t* a1 = a0 + 16 * lda;
        if (k0 == 0) {
          TILE_ZERO(0);
          TILE_ZERO(1);
          TILE_ZERO(2);
          TILE_ZERO(3);
        } else {
          TILE_LOAD(0, c, 128);
          TILE_LOAD(1, c + 16, 128);
          TILE_LOAD(2, c + 512, 128);
          TILE_LOAD(3, c + 528, 128);
        }
        for (int64_t ks = k0; ks < k1; ++ks) {
          const uint8_t* bp = panel + ks * kStepBytes;
          if (first) prefetch_ahead(bp);
          TILE_LOAD(4, a0 + ks * kBf16Step, sa);
          TILE_LOAD(6, bp, 64);
          TILE_LOAD(7, bp + kTileBytes, 64);
          TILE_LOAD(5, a1 + ks * kBf16Step, sa);
          TILE_DPBF16PS(0, 4, 6);
          TILE_DPBF16PS(1, 4, 7);
          TILE_DPBF16PS(2, 5, 6);
          TILE_DPBF16PS(3, 5, 7);
        }
        TILE_STORE(0, c, 128);
        TILE_STORE(1, c + 16, 128);
        TILE_STORE(2, c + 512, 128);
        TILE_STORE(3, c + 528, 128);
      } else {
        if (k0 == 0) {
          TILE_ZERO(0);
          TILE_ZERO(1);
        } else {
          TILE_LOAD(0, c, 128);
          TILE_LOAD(1, c + 16, 128);
        }
        for (int64_t ks = k0; ks < k1; ++ks) {
          const uint8_t* bp = panel + ks * kStepBytes;
          if (first) prefetch_ahead(bp);
          TILE_LOAD(4, a0 + ks * kBf16Step, sa);
          TILE_LOAD(6, bp, 64);
          TILE_LOAD(7, bp + kTileBytes, 64);
          TILE_DPBF16PS(0, 4, 6);
          TILE_DPBF16PS(1, 4, 7);
        }
        TILE_STORE(0, c, 128);
        TILE_STORE(1, c + 16, 128);
      }
    }
  }
}

namespace {
// C[r][0..32) += (S[r][0..32) as float) * w_scale[0..32) * a_scale[r], rows [0, rows).
inline void scale_accumulate(const int32_t* S, int rows, const float* a_scale, int64_t a_ld, const float* w_scale,
                             float* C) {
  const __m512 ws0 = _mm512_loadu_ps(w_scale);
  const __m512 ws1 = _mm512_loadu_ps(w_scale + 16);
  for (int r = 0; r < rows; ++r) {
    const __m512 as = _mm512_set1_ps(a_scale[r * a_ld]);
    float* c = C + r * kPanelCols;
    const __m512 t0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(S + r * kPanelCols)), ws0);
    const __m512 t1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(S + r * kPanelCols + 16)), ws1);
    _mm512_store_ps(c, _mm512_fmadd_ps(t0, as, _mm512_load_ps(c)));
    _mm512_store_ps(c + 16, _mm512_fmadd_ps(t1, as, _mm512_load_ps(c + 16)));
  }
}
// Group 32: both halves of a K step in one pass over C (C loaded and stored once per row); the
// same float operations in the same order as two scale_accumulate calls (low half first).
inline void scale_accumulate_halves(const int32_t* S_lo, const int32_t* S_hi, int rows, const float* a_scale,
                                    int64_t a_ld, const float* w_scale, float* C) {
  const __m512 wl0 = _mm512_loadu_ps(w_scale), wl1 = _mm512_loadu_ps(w_scale + 16);
  const __m512 wh0 = _mm512_loadu_ps(w_scale + kPanelCols), wh1 = _mm512_loadu_ps(w_scale + kPanelCols + 16);
  for (int r = 0; r < rows; ++r) {
    const __m512 al = _mm512_set1_ps(a_scale[r * a_ld]), ah = _mm512_set1_ps(a_scale[r * a_ld + 1]);
    float* c = C + r * kPanelCols;
    const int32_t* sl = S_lo + r * kPanelCols;
    const int32_t* sh = S_hi + r * kPanelCols;
    __m512 c0 = _mm512_load_ps(c), c1 = _mm512_load_ps(c + 16);
    c0 = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(sl)), wl0), al, c0);
    c1 = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(sl + 16)), wl1), al, c1);
    c0 = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(sh)), wh0), ah, c0);
    c1 = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(sh + 16)), wh1), ah, c1);
    _mm512_store_ps(c, c0);
    _mm512_store_ps(c + 16, c1);
  }
}
}  // namespace

namespace {
// Group 32: per K step, the low and high 32 K of the step each get their own int32 tiles
// (C0/C1 low half, C2/C3 high half, for one 16-row block), then one scale pass over both. Twice the
// TDPBSSD count and scaling of group 64 (each instruction does half the K work).
void panel_int8_amx_g32(const int8_t* A, int64_t lda, const float* a_scale, int mrows, const uint8_t* panel,
                        const float* w_scale, int64_t n_groups, float* C) {
  tile_config_thread(TileShape::half_k);
  const int mt = (mrows + 15) / 16;
  std::memset(C, 0, sizeof(float) * size_t(mt) * 16 * kPanelCols);
  alignas(64) int32_t S[2][16 * kPanelCols];
  const int64_t k_steps = n_groups / 2;
  // Steps per block: 4 (8 KiB of panel) stay in L1 while the 16-row blocks run over them.
  const int64_t kblk = mt <= 1 && tuning.single_pair_unblocked ? k_steps : 4;
  for (int64_t k0 = 0; k0 < k_steps; k0 += kblk) {
    const int64_t k1 = std::min(k_steps, k0 + kblk);
    for (int m = 0; m < mt; ++m) {
      const int8_t* a0 = A + int64_t(m) * 16 * lda;
      const int rows = std::min(mrows - m * 16, 16);
      float* c = C + int64_t(m) * 16 * kPanelCols;
      const float* as = a_scale + int64_t(m) * 16 * n_groups;
      for (int64_t ks = k0; ks < k1; ++ks) {
        const uint8_t* bp = panel + ks * kStepBytes;
        if (m == 0) prefetch_ahead(bp);
        tile_step_half_k(a0 + ks * kInt8Step, lda, bp, S[0], S[1]);
        scale_accumulate_halves(S[0], S[1], rows, as + 2 * ks, n_groups, w_scale + 2 * ks * kPanelCols, c);
      }
    }
  }
}
}  // namespace

// Per group: int32 tile accumulate over group/64 steps, store, scale into F32 C. Groups are
// blocked (about 4 steps = 8 KiB of panel) so the panel block stays in L1 across row blocks.
void panel_int8_amx(const int8_t* A, int64_t lda, const float* a_scale, int mrows, const uint8_t* panel,
                    const float* w_scale, const int32_t* colsum, int64_t n_groups, int group, float* C) {
  (void)colsum;
  if (group == 32) {
    panel_int8_amx_g32(A, lda, a_scale, mrows, panel, w_scale, n_groups, C);
    return;
  }
  const int group_steps = group / kInt8Step;
  tile_config_thread();
  const int mt = (mrows + 15) / 16;
  std::memset(C, 0, sizeof(float) * size_t(mt) * 16 * kPanelCols);
  alignas(64) int32_t S[32 * kPanelCols];
  const int64_t gblk = mt <= 2 && tuning.single_pair_unblocked ? n_groups : std::max(1, 4 / group_steps);
  for (int64_t g0 = 0; g0 < n_groups; g0 += gblk) {
    const int64_t g1 = std::min(n_groups, g0 + gblk);
    for (int m = 0; m < mt; m += 2) {
      const int8_t* a0 = A + int64_t(m) * 16 * lda;
      const int rows = std::min(mrows - m * 16, m + 1 < mt ? 32 : 16);
      float* c = C + int64_t(m) * 16 * kPanelCols;
      const float* as = a_scale + int64_t(m) * 16 * n_groups;
      const bool first = m == 0;
      for (int64_t g = g0; g < g1; ++g) {
        const int64_t s0 = g * group_steps, s1 = s0 + group_steps;
        if (m + 1 < mt) {
          const int8_t* a1 = a0 + 16 * lda;
          TILE_ZERO(0);
          TILE_ZERO(1);
          TILE_ZERO(2);
          TILE_ZERO(3);
          for (int64_t ks = s0; ks < s1; ++ks) {
            const uint8_t* bp = panel + ks * kStepBytes;
            if (first) prefetch_ahead(bp);
            TILE_LOAD(4, a0 + ks * kInt8Step, lda);
            TILE_LOAD(6, bp, 64);
            TILE_LOAD(7, bp + kTileBytes, 64);
            TILE_LOAD(5, a1 + ks * kInt8Step, lda);
            TILE_DPBSSD(0, 4, 6);
            TILE_DPBSSD(1, 4, 7);
            TILE_DPBSSD(2, 5, 6);
            TILE_DPBSSD(3, 5, 7);
          }
          TILE_STORE(0, S, 128);
          TILE_STORE(1, S + 16, 128);
          TILE_STORE(2, S + 512, 128);
          TILE_STORE(3, S + 528, 128);
        } else {
          TILE_ZERO(0);
          TILE_ZERO(1);
          for (int64_t ks = s0; ks < s1; ++ks) {
            const uint8_t* bp = panel + ks * kStepBytes;
            if (first) prefetch_ahead(bp);
            TILE_LOAD(4, a0 + ks * kInt8Step, lda);
            TILE_LOAD(6, bp, 64);
            TILE_LOAD(7, bp + kTileBytes, 64);
            TILE_DPBSSD(0, 4, 6);
            TILE_DPBSSD(1, 4, 7);
          }
          TILE_STORE(0, S, 128);
          TILE_STORE(1, S + 16, 128);
        }
        scale_accumulate(S, rows, as + g, n_groups, w_scale + g * kPanelCols, c);
      }
    }
  }
}

// AVX-512 BF16: 4 rows x 32 columns per pass; each 64-byte row of a B tile is one VNNI-pair
// vector for 16 columns, multiplied by a broadcast activation pair.
void panel_bf16_avx512(const uint16_t* A, int64_t lda, int mrows, const uint8_t* panel, int64_t k_steps, float* C) {
  const int mr = (mrows + 3) & ~3;
  for (int m = 0; m < mr; m += 4) {
    __m512 acc[4][2];
    for (auto& r : acc) r[0] = r[1] = _mm512_setzero_ps();
    const uint16_t* a = A + int64_t(m) * lda;
    for (int64_t ks = 0; ks < k_steps; ++ks) {
      const uint8_t* bp = panel + ks * kStepBytes;
      if (m == 0) prefetch_ahead(bp);
      const uint16_t* ak = a + ks * kBf16Step;
      for (int kp = 0; kp < 16; ++kp) {
        const __m512bh b0 = (__m512bh)_mm512_load_si512(bp + kp * 64);
        const __m512bh b1 = (__m512bh)_mm512_load_si512(bp + kTileBytes + kp * 64);
        for (int i = 0; i < 4; ++i) {
          int32_t pair;
          std::memcpy(&pair, ak + i * lda + 2 * kp, 4);
          const __m512bh av = (__m512bh)_mm512_set1_epi32(pair);
          acc[i][0] = _mm512_dpbf16_ps(acc[i][0], av, b0);
          acc[i][1] = _mm512_dpbf16_ps(acc[i][1], av, b1);
        }
      }
    }
    for (int i = 0; i < 4; ++i) {
      _mm512_storeu_ps(C + (m + i) * kPanelCols, acc[i][0]);
      _mm512_storeu_ps(C + (m + i) * kPanelCols + 16, acc[i][1]);
    }
  }
}

// AVX-512 VNNI: vpdpbusd wants unsigned x signed, so activations are offset by +128 (xor of the
// sign bit) and 128 * colsum is taken back per group before scaling.
void panel_int8_avx512(const int8_t* A, int64_t lda, const float* a_scale, int mrows, const uint8_t* panel,
                       const float* w_scale, const int32_t* colsum, int64_t n_groups, int group, float* C) {
  const int group_quads = group / 4;  // K quads per scale group (8 for group 32)
  const int mr = (mrows + 3) & ~3;
  const __m512i flip = _mm512_set1_epi32(int32_t(0x80808080u));
  for (int m = 0; m < mr; m += 4) {
    __m512 acc[4][2];
    for (auto& r : acc) r[0] = r[1] = _mm512_setzero_ps();
    const int8_t* a = A + int64_t(m) * lda;
    for (int64_t g = 0; g < n_groups; ++g) {
      __m512i ai[4][2];
      for (auto& r : ai) r[0] = r[1] = _mm512_setzero_si512();
      // Quads [q0, q0 + NQ) of one K step (B tile rows q0 % 16 ...); NQ is 16, or 8 for group 32.
      auto quads = [&](int64_t q0, auto nq) {
        const int64_t ks = q0 / 16;
        const uint8_t* bp = panel + ks * kStepBytes;
        if (m == 0 && q0 % 16 == 0) prefetch_ahead(bp);
        const int8_t* ak = a + ks * kInt8Step;
        for (int kq = int(q0 % 16); kq < int(q0 % 16) + decltype(nq)::value; ++kq) {
          const __m512i b0 = _mm512_load_si512(bp + kq * 64);
          const __m512i b1 = _mm512_load_si512(bp + kTileBytes + kq * 64);
          for (int i = 0; i < 4; ++i) {
            int32_t quad;
            std::memcpy(&quad, ak + i * lda + 4 * kq, 4);
            const __m512i av = _mm512_xor_si512(_mm512_set1_epi32(quad), flip);
            ai[i][0] = _mm512_dpbusd_epi32(ai[i][0], av, b0);
            ai[i][1] = _mm512_dpbusd_epi32(ai[i][1], av, b1);
          }
        }
      };
      if (group_quads == 8) {
        quads(g * 8, std::integral_constant<int, 8>{});
      } else {
        for (int64_t q0 = g * group_quads; q0 < (g + 1) * group_quads; q0 += 16) quads(q0, std::integral_constant<int, 16>{});
      }
      const __m512i cs0 = _mm512_slli_epi32(_mm512_loadu_si512(colsum + g * kPanelCols), 7);
      const __m512i cs1 = _mm512_slli_epi32(_mm512_loadu_si512(colsum + g * kPanelCols + 16), 7);
      const __m512 ws0 = _mm512_loadu_ps(w_scale + g * kPanelCols);
      const __m512 ws1 = _mm512_loadu_ps(w_scale + g * kPanelCols + 16);
      for (int i = 0; i < 4; ++i) {
        const __m512 as = _mm512_set1_ps(a_scale[(m + i) * n_groups + g]);
        const __m512 t0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(ai[i][0], cs0)), ws0);
        const __m512 t1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(ai[i][1], cs1)), ws1);
        acc[i][0] = _mm512_fmadd_ps(t0, as, acc[i][0]);
        acc[i][1] = _mm512_fmadd_ps(t1, as, acc[i][1]);
      }
    }
    for (int i = 0; i < 4; ++i) {
      _mm512_storeu_ps(C + (m + i) * kPanelCols, acc[i][0]);
      _mm512_storeu_ps(C + (m + i) * kPanelCols + 16, acc[i][1]);
    }
  }
}

void convert_row_bf16(const float* x, int64_t k, int64_t k_pad, uint16_t* dst) {
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    const __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(x + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), (__m256i)h);
  }
  if (i < k) {
    const __mmask16 mk = __mmask16((1u << (k - i)) - 1);
    const __m256bh h = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mk, x + i));
    _mm256_mask_storeu_epi16(dst + i, mk, (__m256i)h);
    i = k;
  }
  if (k_pad > k) std::memset(dst + k, 0, size_t(k_pad - k) * 2);
}

void quantize_row_int8(const float* x, int64_t k, int64_t k_pad, int group, int8_t* q, float* scales) {
  for (int64_t g0 = 0; g0 < k_pad; g0 += group) {
    const int64_t n = std::max<int64_t>(0, std::min<int64_t>(group, k - g0));
    __m512 mx = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
      const __mmask16 mk = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
      mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_maskz_loadu_ps(mk, x + g0 + i)));
    }
    const float amax = _mm512_reduce_max_ps(mx);
    scales[g0 / group] = amax / 127.0f;
    const __m512 inv = _mm512_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
    for (int64_t i = 0; i < group; i += 16) {
      const int64_t left = n - i;
      const __mmask16 mk =
          left >= 16 ? __mmask16(0xFFFF) : (left <= 0 ? __mmask16(0) : __mmask16((1u << left) - 1));
      const __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x + g0 + i), inv));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + g0 + i), _mm512_cvtsepi32_epi8(v));
    }
  }
}

}  // namespace mixtile::amx
