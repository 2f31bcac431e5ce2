// AMX expert kernels: weights repacked once into tile-shaped panels, then the routed-experts op
// (gate+up fused, SiLU·up, down, weighted sum) on AMX-BF16 (TDPBF16PS) or AMX-INT8 (TDPBSSD),
// with an AVX-512 path over the same panels for experts that get few tokens.
// Plain pointers only: the experts dispatch entry (amx-experts.cc) adapts ExpertsWeights to this.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace mixtile::amx {

// ---- Packed layout -------------------------------------------------------------------------
// A weight matrix W [n_out rows][k] (y = x · W^T) is cut into panels of 32 output columns.
// A panel holds, for each K step (32 elements BF16, 64 elements INT8), two 1 KiB B tiles
// (columns 0-15 and 16-31 of the panel), so a thread walking one panel reads contiguous memory:
//
//   panel p:  [kstep 0: tile0 | tile1][kstep 1: tile0 | tile1] ...        (2 KiB per kstep)
//   BF16 tile (VNNI pairs): row r (0..15) = for n in 0..15: W[n][2r], W[n][2r+1]   (16 x 64 B)
//   INT8 tile (VNNI quads): row r (0..15) = for n in 0..15: W[n][4r .. 4r+3]       (16 x 64 B)
//
// Fused gate+up: panel p carries gate rows [16p, 16p+16) as tile0 and up rows [16p, 16p+16) as
// tile1, so one panel yields 16 finished columns of h = SiLU(gate)·up in a single weight pass.
// Tails: n_out and k are zero-padded to the panel/kstep size; activations are zero-padded too.
// INT8: symmetric per-row, per-group (group = `group` elements along K, a multiple of 64) scales,
// stored [panel][group][32] float; colsum [panel][group][32] int32 (sum of the group's quants,
// used by the AVX-512 VNNI path's unsigned-activation offset). Activations are quantized per
// token per group the same way when an expert's rows are gathered.
// Why group 64 (the default): one TDPBSSD consumes exactly 64 K elements per tile row, so a group
// is one K step: the int32 tile is stored and scaled (AVX-512, per row: convert, x w_scale,
// fma with a_scale) once per step. Group 32 would need half-width tiles (half the work per
// TDPBSSD) and twice the scaling; 128/256 scale less often (faster when compute-bound) but lose
// accuracy (bench/RESULTS.md "## AMX": 3.3% / 4.3% / 5.5% relative error for 64 / 128 / 256).
//
// The AVX-512 path for experts with few tokens reads these same panels, so after load the
// original (mmapped) weights are not read again and there is one copy of the experts in memory.
//
// Q4K (backend "AMXInt4"; Q4_K sources only, layout repack-q4k.cc): the INT8 panel order with two
// weights per byte, the Q4_K nibbles (0..15) kept exactly. A K step of 64 is 1 KiB: per B tile
// 512 bytes, byte i's low nibble = INT8-tile byte i (K 0-31 of the step), its high nibble = byte
// 512 + i (K 32-63), so one 64-byte and/shift pair yields two tile rows. Per (column, 32-K group)
// the Q4_K sub-block scale and min as 6-bit integers (q4_sm [panel][group][sc 32 | m 32] bytes),
// per (column, 256-K super-block) d and dmin as F32 (q4_d [panel][super][d 32 | dmin 32]); so
// w = d*sc*q - dmin*m exactly as Q4_K dequantizes. 0.59 bytes per weight (Q4_K 0.5625, INT8
// panels 1.125). Activations: INT8 per token per 32-K group plus the group's integer sum, or per
// 64/128/256 for the folded kernels (PackedExperts::q4_act_group).
enum class Dtype : int { bf16 = 0, int8 = 1, q4k = 2 };

// Bumped whenever the packed bytes of a given source change (panel layout, rounding, scales):
// it is part of every repack cache key, so old cache files are rebuilt, never misread.
constexpr int kLayoutVersion = 1;
// Bumped whenever the Q4K panels' bytes change (also in their cache key, beside kLayoutVersion).
constexpr int kQ4kLayoutVersion = 1;

struct PackedMatrix {
  int64_t n_out = 0, k = 0;    // logical shape
  int64_t n_panels = 0;        // ceil(n_out / 32) (fused: ceil(ffn / 16))
  int64_t k_steps = 0;         // ceil(k / kstep_elems)
  int64_t k_pad = 0;           // k_steps * kstep_elems
  size_t panel_bytes = 0;      // k_steps * 2048
  const uint8_t* data = nullptr;      // n_panels * panel_bytes, 64-byte aligned
  const float* scales = nullptr;      // INT8: [n_panels][n_groups][32]
  const int32_t* colsum = nullptr;    // INT8: [n_panels][n_groups][32]
  int64_t n_groups = 0;               // INT8: k_pad / group; Q4K: k_pad / 32
  const uint8_t* q4_sm = nullptr;     // Q4K: [n_panels][n_groups][64] sub-block scales | mins
  const float* q4_d = nullptr;        // Q4K: [n_panels][k_pad / 256][64] d | dmin
};

struct PackedExperts {
  Dtype dtype = Dtype::bf16;       // gate+up panels, and the expert input's conversion
  Dtype down_dtype = Dtype::bf16;  // down panels and h: dtype, or BF16 under INT8 gate+up (down_bf16),
                                   // or INT8 group 32 under Q4K gate+up when down is not Q4_K (Q6_K)
  int group = 64;  // INT8 group size along K (32, 64, 128 or 256); Q4K: 32
  // Q4K: activations (x, and h for a Q4K down) INT8 per 32 with the per-32 scale pass, or per 64 / 128
  // / 256 with the sub-block scales folded into the integer products (kernels.h panel_q4k_folded_*).
  int q4_act_group = 32;
  int64_t n_expert = 0, hidden = 0, ffn = 0;
  std::shared_ptr<uint8_t> storage;  // owns every matrix below (a buffer, or a mapped cache file)
  size_t storage_bytes = 0;
  const char* cache_outcome = "off";  // repack_cache::outcome_name of the load
  // Per expert: gate_up[e] (fused, n_out = 2*ffn, k = hidden), down[e] (n_out = hidden, k = ffn).
  std::unique_ptr<PackedMatrix[]> gate_up, down;
};

// A dense weight W [n_out][k] in the panel layout (linear layers: attention projections, lm_head).
struct PackedLinear {
  Dtype dtype = Dtype::bf16;
  int group = 64;
  PackedMatrix w;
  std::shared_ptr<uint8_t> storage;
  size_t storage_bytes = 0;
  const char* cache_outcome = "off";
};

// What the repack cache keys a packed result on (repack-cache.h): slot names the cache file,
// key the exact source bytes and target layout; an empty key means "do not cache".
struct CacheKey {
  std::string slot, key;
  double source_bytes = 0;  // for the load log's GB/s
};

// Writes row `row` of expert `expert`'s matrix as k floats into dst (any source type: the
// caller dequantizes). Called from several threads at once.
using RowFn = std::function<void(int64_t expert, int64_t row, float* dst)>;

// Repacks all experts (parallel over experts on the pool). gate/up: rows of [ffn][hidden],
// down: rows of [hidden][ffn]. group: INT8 group size (32 or a multiple of 64; ignored for BF16).
// down_bf16 (INT8 only): down panels in BF16 and h = SiLU(gate)·up rounded to BF16 instead of
// quantized per group (h's INT8 rounding is the largest part of INT8's error; the down weights
// then take twice the bytes: experts 1.33x of all-INT8).
std::shared_ptr<PackedExperts> pack_experts(Dtype dtype, int group, int64_t n_expert, int64_t hidden,
                                            int64_t ffn, const RowFn& gate, const RowFn& up, const RowFn& down,
                                            const CacheKey& cache = {}, bool down_bf16 = false);
// Q4K: returns the Q4_K bytes of row `row` of expert `expert` (k / 256 blocks).
using BlockRowFn = std::function<const uint8_t*(int64_t expert, int64_t row)>;
// Repacks Q4_K experts into Q4K panels (a re-layout: no requantization). hidden (and ffn for a
// Q4_K down) must be multiples of 256, as Q4_K rows are. down_q4k: the down rows as Q4_K blocks, or nullptr when down has another type:
// then down becomes INT8 group-32 panels from down_rows (dequantized F32 rows).
// act_group: PackedExperts::q4_act_group (32, 64, 128 or 256); the packed bytes do not depend on it.
std::shared_ptr<PackedExperts> pack_experts_q4k(int64_t n_expert, int64_t hidden, int64_t ffn, const BlockRowFn& gate,
                                                const BlockRowFn& up, const BlockRowFn* down_q4k,
                                                const RowFn& down_rows, const CacheKey& cache = {},
                                                int act_group = 32);
// Repacks one dense matrix (parallel over panels); row(0, r, dst) writes row r (k floats).
std::shared_ptr<PackedLinear> pack_linear(Dtype dtype, int group, int64_t n_out, int64_t k, const RowFn& row,
                                          const CacheKey& cache = {});

// ---- Forward -------------------------------------------------------------------------------
// Experts that get at least `min_tokens` tokens run on AMX, the others on AVX-512 over the same
// panels. min_tokens < 0 means default_min_tokens(dtype).
struct ForwardArgs {
  const float* x;        // [n, hidden] F32
  int64_t n;
  const int32_t* ids;    // [n, top_k] expert ids in [0, n_expert)
  const float* weights;  // [n, top_k] routing weights
  int top_k;
  float* y;              // [n, hidden] F32, overwritten
  int min_tokens = -1;
};
void experts_forward(const PackedExperts& pe, const ForwardArgs& a);

// Timing and work of the last experts_forward call (per-kernel counters for bench and metrics).
struct ForwardStats {
  double convert_s = 0, gate_up_s = 0, down_s = 0, sum_s = 0, total_s = 0;
  double flops = 0;  // 2 * tokens * 3 * hidden * ffn over all (token, expert) pairs, padding excluded
  int experts_amx = 0, experts_avx512 = 0;
};
ForwardStats last_forward_stats();

// Tokens per expert from which AMX beats the AVX-512 path for this dtype (measured, see
// machine.cc); MIXTILE_AMX_MIN_TOKENS overrides it.
int default_min_tokens(Dtype dtype);
// Whether the AMX experts entry takes a call of n tokens: from default_min_pairs_per_expert()
// (token, expert) pairs per expert on average (measured, machine.cc); smaller calls (decode) go
// to the generic AVX-512 kernels over the source weights, which for K-quants read about half the
// bytes of the INT8 panels. MIXTILE_AMX_MIN_CALL_TOKENS=N (tokens per call) overrides it.
bool call_takes_amx(Dtype dtype, int64_t n, int top_k, int64_t n_expert);
double default_min_pairs_per_expert(Dtype dtype);
int call_min_tokens_override();  // MIXTILE_AMX_MIN_CALL_TOKENS, or -1

// y[n][n_out] = x[n][k] W^T on AMX tiles. x F32 rows of k; y overwritten.
void linear_forward(const PackedLinear& pl, const float* x, int64_t n, float* y);
// Tokens per call from which a linear layer runs on AMX instead of the AVX-512 GEMM over its
// source weights (machine.cc); MIXTILE_AMX_LINEAR_MIN_TOKENS overrides it.
int default_linear_min_tokens();

// ---- Machine -------------------------------------------------------------------------------
// True when the CPU has AMX-TILE/BF16/INT8 and the kernel granted this process the tile data
// state (arch_prctl ARCH_REQ_XCOMP_PERM, asked once). On refusal the reason is logged once to
// stderr and kept for reason().
bool available();
const std::string& unavailable_reason();
// CPU flags relevant to AMX, for messages ("avx512f avx512_bf16 amx_tile ...").
std::string cpu_flags();

}  // namespace mixtile::amx
