// Internal to native/src/cpu/amx: panel kernels (one 32-column weight panel against a block of
// activation rows, full K) and the activation conversions they read. Layouts: see amx.h.
#pragma once
#include <cstddef>
#include <cstdint>

namespace mixtile::amx {

constexpr int kPanelCols = 32;        // output columns per panel (two 16-column B tiles)
constexpr size_t kTileBytes = 1024;   // one B tile: 16 rows x 64 bytes
constexpr size_t kStepBytes = 2048;   // one K step of a panel: tile0 | tile1
constexpr int kBf16Step = 32;         // K elements per BF16 step (16 VNNI pairs)
constexpr int kInt8Step = 64;         // K elements per INT8 step (16 VNNI quads)
constexpr int kRowAlign = 16;
constexpr size_t kQ4TileBytes = 512;  // one Q4K B tile: the INT8 tile's 1 KiB as nibbles
constexpr size_t kQ4StepBytes = 1024; // one K step (64) of a Q4K panel: tile0 | tile1         // activation rows are padded (with zeros) to this

// All kernels: C is [round_up(mrows, 16)][32] F32 (row stride 32), overwritten; rows of A past
// mrows up to the next multiple of 16 must be readable (they are zero padding); lda in elements.

// BF16: A [rows][lda] bf16 bits (lda >= k_steps*32), panel of k_steps steps.
void panel_bf16_amx(const uint16_t* A, int64_t lda, int mrows, const uint8_t* panel, int64_t k_steps, float* C);
void panel_bf16_avx512(const uint16_t* A, int64_t lda, int mrows, const uint8_t* panel, int64_t k_steps, float* C);

// INT8: A [rows][lda] int8 quants, a_scale [rows][n_groups] (per token per group), w_scale and
// colsum [n_groups][32] of this panel; group = K elements per scale (32, or a multiple of 64).
// Group 32 (two scales per 64-wide K step, as Q8_0 x Q8_0): the AMX kernel splits each step into
// two half-K products (tile shape TileShape::half_k) with their own int32 tiles, 16 rows a pass.
void panel_int8_amx(const int8_t* A, int64_t lda, const float* a_scale, int mrows, const uint8_t* panel,
                    const float* w_scale, const int32_t* colsum, int64_t n_groups, int group, float* C);
void panel_int8_avx512(const int8_t* A, int64_t lda, const float* a_scale, int mrows, const uint8_t* panel,
                       const float* w_scale, const int32_t* colsum, int64_t n_groups, int group, float* C);

// Q4K (layout amx.h): A, a_scale as INT8 group 32, a_sum [rows][n_groups] the int sum of each
// group's quants; sm, dd this panel's q4_sm / q4_d. Per group g, column n of row t:
// C[t][n] += a_scale[t][g] * ((d*sc)[n][g] * sum_k A[t][k] q[n][k] - (dmin*m)[n][g] * a_sum[t][g]).
// The AMX kernel unpacks a block of K steps to an INT8-layout staging buffer in L1 and runs the
// group-32 tile sequence (TDPBSSD: the nibbles 0..15 are the same as signed bytes); the AVX-512
// path (vpdpbusd, nibbles as the unsigned operand) makes the same int32 sums and the same float
// steps in the same order, so both give the same bits.
void panel_q4k_amx(const int8_t* A, int64_t lda, const float* a_scale, const int32_t* a_sum, int mrows,
                   const uint8_t* panel, const uint8_t* sm, const float* dd, int64_t n_groups, float* C);
void panel_q4k_avx512(const int8_t* A, int64_t lda, const float* a_scale, const int32_t* a_sum, int mrows,
                      const uint8_t* panel, const uint8_t* sm, const float* dd, int64_t n_groups, float* C);
// Q4K with activations INT8 per act_group (64, 128 or 256, within one Q4_K super-block; a_scale
// still has a slot per 32, each group's value in all of its slots, read at the group's first) and
// the sub-block scales folded into the integer products: the AMX kernel stages, per K step, the
// bytes of q*sc (<= 945) split into low bytes and high parts and the mins m as B tiles, so three
// TDPBSUD pairs per step accumulate S = sum x*q*sc and M = sum x*m over the whole activation group
// and the float pass c += a_scale * (d*S - dmin*M) runs once per act_group instead of per 32 (the
// arithmetic of llama.cpp's Q4_K x Q8_K at act_group 256). The AVX-512 path makes the same S and M
// exactly (per-32 sums, then vpmulld) and the same float steps, so the same bits.
void panel_q4k_folded_amx(const int8_t* A, int64_t lda, const float* a_scale, const int32_t* a_sum, int act_group,
                          int mrows, const uint8_t* panel, const uint8_t* sm, const float* dd, int64_t n_groups,
                          float* C);
void panel_q4k_folded_avx512(const int8_t* A, int64_t lda, const float* a_scale, const int32_t* a_sum,
                             int act_group, int mrows, const uint8_t* panel, const uint8_t* sm, const float* dd,
                             int64_t n_groups, float* C);
// sums[g] = sum of q[g*group .. (g+1)*group) for g < k_pad / group.
void group_sums_int8(const int8_t* q, int64_t k_pad, int group, int32_t* sums);

// x[k] F32 -> dst[k_pad] bf16 (round to nearest even), zeros past k.
void convert_row_bf16(const float* x, int64_t k, int64_t k_pad, uint16_t* dst);
// x[k] F32 -> q[k_pad] int8 + scales[k_pad / group]: symmetric per group, scale = max|x| / 127,
// q = round(x / scale); zeros past k; an all-zero group gets scale 0.
void quantize_row_int8(const float* x, int64_t k, int64_t k_pad, int group, int8_t* q, float* scales);

// Kernel knobs swept by amx-bench ("tuning sweep"); defaults are the measured best on the test
// machine: prefetch 8 steps (16 KiB) ahead cut the 512-token BF16 call from 22.8 to 16.7 ms and
// the AVX-512 path at 1 token per expert from 19.2 to 12.9 ms; an unblocked single pair (no C
// tile reloads) took the 512-token call on to 16.7 ms.
struct KernelTuning {
  int prefetch_steps = 8;            // software prefetch (to L2) of the panel this many K steps ahead; 0 = off
  bool single_pair_unblocked = true; // no K blocking when the rows fit one 32-row pair
};
extern KernelTuning tuning;

// Runs a few tile instructions (config, zero, TDPBF16PS, TDPBSSD, release). machine.cc calls it
// in a forked child: a machine that advertises AMX but faults on it then kills only that child.
void tile_probe();

// Loads a palette-1 tile configuration on the calling thread unless it is already loaded.
// full: all eight tiles 16 rows x 64 bytes (C0-C3 = tmm0-3, A0-A1 = tmm4-5, B0-B1 = tmm6-7).
// half_k: C tmm0-3 16 x 64 bytes, A tmm4-5 16 rows x 32 bytes (32 K), B tmm6-7 8 rows x 64 bytes
// (8 quads = 32 K), for INT8 group 32. Loading a configuration zeroes the tiles, so each kernel
// asks for its shape on entry and keeps no tile state across calls.
enum class TileShape : int { full = 0, half_k = 1 };
void tile_config_thread(TileShape shape = TileShape::full);

}  // namespace mixtile::amx
