// Q4_K, Q5_K and Q6_K x Q8_K with tokens in vector lanes, for many tokens (prefill): each int32
// lane of an accumulator is one token, so the per-block scales are applied once per 16 tokens
// instead of once per token. Activations of a 16-token group are transposed into quads,
// offset-binary (a + 128):
//   A[q][t] = 4 bytes a_t[4q .. 4q+3] ^ 0x80        (q = k/4 quads, t = 16 lanes; 64 B per q)
// and each weight row's super-block is unpacked to 256 int8 quants in element order (Q4_K: the
// nibbles 0..15; Q5_K: with the 5th bit from qh merged in, 0..31, as in matmul-q5k-avx512vnni.cc;
// Q6_K: q - 32, -32..31), so one
//   vpdpbusd(acc, A[q], broadcast(w[4q .. 4q+3]))
// adds 4 MACs for each of 16 tokens. The +128 offset is removed per block with the row's
// sum_j sc_j * 128 * sum(w of sub-block j); Q4_K/Q5_K's min term is -dmin * m_j * (d_a * bsum_j) in
// float. Register tile: 2 rows x 2 token groups (32 tokens). Tokens beyond the last full group of
// 16 go to the type's row kernel (gemm_q{4,5,6}_k_avx512vnni), or, where they complete a pair of
// groups, into a padded group (PAD_MIN_TOKENS).
#include <immintrin.h>

#include <cstring>
#include <type_traits>
#include <vector>

#include "cpu/matmul/kquant-prefetch.h"
#include "cpu/matmul/kquant-scales.h"
#include "cpu/matmul/matmul.h"

namespace mixtile {
namespace {

constexpr int LANES = 16;

struct TokenGroup {
  std::vector<uint8_t> a;   // [nq][16][4] u8
  std::vector<float> da;    // [nb][16]  d_a per block
  std::vector<float> bs;    // [nb][8][16]  d_a * sum of q8 over sub-block j
  int n = LANES;            // real tokens; lanes from n on are zero activations (d_a = 0), not stored
  std::vector<block_q8_K> zero;  // the zero activation row of the padding lanes
};

// 16 rows of 16 dwords -> 16 columns: out[q] = {r[0][q], .., r[15][q]} (4 shuffle stages).
inline void transpose16(__m512i r[16]) {
  __m512i t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  // u[4i + k], 128-bit chunk c = rows 4i .. 4i+3 at column 4c + k.
  for (int i = 0; i < 4; ++i) {
    u[4 * i + 0] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int k = 0; k < 4; ++k) {  // 4x4 transpose of 128-bit chunks
    __m512i v0 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0x44), v1 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0xEE);
    __m512i v2 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0x44), v3 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0xEE);
    r[k] = _mm512_shuffle_i32x4(v0, v2, 0x88);
    r[4 + k] = _mm512_shuffle_i32x4(v0, v2, 0xDD);
    r[8 + k] = _mm512_shuffle_i32x4(v1, v3, 0x88);
    r[12 + k] = _mm512_shuffle_i32x4(v1, v3, 0xDD);
  }
}

void build_group(const GemmArgs& g, int64_t t0, TokenGroup& tg) {
  const int64_t nb = g.k / QK_K, nq = g.k / 4;
  tg.a.resize(size_t(nq * 64));
  tg.da.resize(size_t(nb * 16));
  tg.bs.resize(size_t(nb * 8 * 16));
  tg.n = int(std::min<int64_t>(LANES, g.n_tok - t0));
  if (tg.n < LANES) tg.zero.assign(size_t(nb), block_q8_K{});
  const block_q8_K* a[LANES];
  for (int t = 0; t < LANES; ++t) {
    a[t] = t < tg.n ? reinterpret_cast<const block_q8_K*>(g.a + size_t(t0 + t) * g.a_stride) : tg.zero.data();
  }
  const __m512i bias = _mm512_set1_epi8(char(0x80));
  for (int64_t b = 0; b < nb; ++b) {
    for (int c = 0; c < QK_K / 64; ++c) {  // 16 quads (64 bytes) of every token at a time
      __m512i r[LANES];
      for (int t = 0; t < LANES; ++t) r[t] = _mm512_xor_si512(_mm512_loadu_si512(a[t][b].qs + 64 * c), bias);
      transpose16(r);
      uint8_t* dst = tg.a.data() + size_t((b * (QK_K / 4) + c * 16) * 64);
      for (int q = 0; q < 16; ++q) _mm512_storeu_si512(dst + q * 64, r[q]);
    }
    for (int t = 0; t < LANES; ++t) {
      tg.da[size_t(b * 16 + t)] = a[t][b].d;
      for (int j = 0; j < 8; ++j)
        tg.bs[size_t((b * 8 + j) * 16 + t)] = a[t][b].d * float(a[t][b].bsums[2 * j] + a[t][b].bsums[2 * j + 1]);
    }
  }
}

// Per row and block: nibbles in element order, scales, mins and the offset correction.
struct RowBlock {
  alignas(64) int8_t w[QK_K];
  int32_t sc[16];
  float neg_dmin_m[8];
  int32_t corr;  // sum_j sc_j * 128 * sum(w of sub-block j)
  float d;
};

// Scale sub-blocks per super-block (8 of 32 elements, or Q6_K's 16 of 16) and whether a min term
// (-dmin * m_j per sub-block) follows.
template <class Block>
struct Kind {
  static constexpr int SUB = 8;
  static constexpr bool MIN = true;
};
template <>
struct Kind<block_q6_K> {
  static constexpr int SUB = 16;
  static constexpr bool MIN = false;
};

// Block: block_q4_K or block_q5_K (same scales layout; Q5_K adds the high bits qh).
template <class Block>
inline void unpack_row_block(const Block& x, RowBlock& rb) {
  constexpr bool q5 = std::is_same<Block, block_q5_K>::value;
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  uint32_t u[4];
  unpack_q4k_scales(x.scales, u);
  const uint8_t* sc = reinterpret_cast<const uint8_t*>(u);
  const uint8_t* m = sc + 8;
  // corr = 128 * sum_e sc_j(e) * w_e: one vpdpbusd per 64 nibbles against per-element scales.
  __m512i corr = _mm512_setzero_si512();
  for (int c = 0; c < 4; ++c) {
    __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs + 32 * c));
    __m512i both = _mm512_and_si512(_mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1), m4);
    if constexpr (q5) {
      // Bits 2c and 2c+1 of qh are the 5th bits of the low and high nibbles of this 32-byte chunk.
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qh));
      __m512i hb = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_srl_epi16(h, _mm_cvtsi32_si128(2 * c))),
                                      _mm256_srl_epi16(h, _mm_cvtsi32_si128(2 * c + 1)), 1);
      both = _mm512_or_si512(both, _mm512_and_si512(_mm512_slli_epi16(hb, 4), _mm512_set1_epi8(0x10)));
    }
    _mm512_store_si512(rb.w + 64 * c, both);
    __m512i scv = _mm512_inserti64x4(_mm512_set1_epi8(char(sc[2 * c])), _mm256_set1_epi8(char(sc[2 * c + 1])), 1);
    corr = _mm512_dpbusd_epi32(corr, both, scv);
  }
  rb.corr = 128 * _mm512_reduce_add_epi32(corr);
  rb.d = _cvtsh_ss(x.d);
  float dmin = _cvtsh_ss(x.dmin);
  for (int j = 0; j < 8; ++j) {
    rb.sc[j] = sc[j];
    rb.neg_dmin_m[j] = -dmin * float(m[j]);
  }
}

// Q6_K: quants q (0..63) rebuilt in element order as in matmul-q6k-avx512vnni.cc, stored as the
// signed w = q - 32, with the 16 signed sub-block scales (no min term). corr = 128 * sum_e sc(e) w_e
// = 128 * (sum_e sc(e) q_e - 32 * 16 * sum_s sc_s), the first sum by vpdpbusd (q unsigned, sc signed).
inline void unpack_row_block(const block_q6_K& x, RowBlock& rb) {
  const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30), o32 = _mm512_set1_epi8(32);
  const __m128i sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x.scales));
  const __m512i sc_all = _mm512_broadcast_i32x4(sc8);
  __m512i corr = _mm512_setzero_si512();
  for (int n = 0; n < 2; ++n) {
    __m512i l = _mm512_loadu_si512(x.ql + 64 * n);
    __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qh + 32 * n));
    __m512i h01 = _mm512_inserti64x4(_mm512_castsi256_si512(h), _mm256_srli_epi16(h, 2), 1);
    __m512i h23 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_srli_epi16(h, 4)), _mm256_srli_epi16(h, 6), 1);
    __m512i q[2] = {_mm512_or_si512(_mm512_and_si512(l, m4), _mm512_and_si512(_mm512_slli_epi16(h01, 4), m30)),
                    _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                                    _mm512_and_si512(_mm512_slli_epi16(h23, 4), m30))};
    for (int c = 0; c < 2; ++c) {
      const int v = 2 * n + c;  // elements 64v .. 64v+63: sub-blocks 4v .. 4v+3, one per 128-bit lane
      _mm512_store_si512(rb.w + 64 * v, _mm512_sub_epi8(q[c], o32));
      // Each byte of 128-bit lane i takes scale 4v + i.
      const __m512i idx = _mm512_add_epi8(_mm512_set1_epi8(char(4 * v)),
                                          _mm512_set_epi64(0x0303030303030303, 0x0303030303030303, 0x0202020202020202,
                                                           0x0202020202020202, 0x0101010101010101, 0x0101010101010101, 0, 0));
      corr = _mm512_dpbusd_epi32(corr, q[c], _mm512_shuffle_epi8(sc_all, idx));
    }
  }
  int32_t sc_sum = 0;
  for (int j = 0; j < 16; ++j) {
    rb.sc[j] = x.scales[j];
    sc_sum += x.scales[j];
  }
  rb.corr = 128 * (_mm512_reduce_add_epi32(corr) - 32 * 16 * sc_sum);
  rb.d = _cvtsh_ss(x.d);
}

template <class Block, int R, int J>
void tile(const GemmArgs& g, int64_t r0, int64_t t0, const TokenGroup* tg) {
  const int64_t nb = g.k / QK_K;
  __m512 acc[R][J];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < J; ++v) acc[r][v] = _mm512_setzero_ps();
  RowBlock rbk[R];
  // The weight stream 4 KiB ahead, as the row kernels (kquant-prefetch.h): one pass over the rows
  // per 32 tokens reads them at DRAM speed. One Zen 4 core, kernel-bench --gemm, 32 tokens,
  // streamed: Q4_K 224 x 2048 183-188 -> 235-237 GFLOP/s, Q5_K 181-183 -> 230, Q4_K 336 x 768
  // 176-178 -> 213-215, Q6_K 336 x 768 144 -> 225.
  const uint8_t* w_end = g.w + size_t(g.n_rows) * g.w_stride;
  for (int64_t b = 0; b < nb; ++b) {
    for (int r = 0; r < R; ++r) {
      const Block& x = reinterpret_cast<const Block*>(g.w + size_t(r0 + r) * g.w_stride)[b];
      kquant_prefetch_block<sizeof(Block)>(reinterpret_cast<const uint8_t*>(&x), w_end);
      unpack_row_block(x, rbk[r]);
    }
    __m512i isum[R][J];
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < J; ++v) isum[r][v] = _mm512_set1_epi32(-rbk[r].corr);
    constexpr int NSUB = Kind<Block>::SUB, QPS = 64 / NSUB;  // quads per sub-block
    for (int j = 0; j < NSUB; ++j) {
      __m512i dj[R][J];
      for (int r = 0; r < R; ++r)
        for (int v = 0; v < J; ++v) dj[r][v] = _mm512_setzero_si512();
      for (int q = 0; q < QPS; ++q) {
        const int64_t qi = b * 64 + j * QPS + q;
        __m512i av[J];
        for (int v = 0; v < J; ++v) av[v] = _mm512_loadu_si512(tg[v].a.data() + qi * 64);
        for (int r = 0; r < R; ++r) {
          int32_t wq;
          std::memcpy(&wq, rbk[r].w + (j * QPS + q) * 4, 4);
          __m512i wb = _mm512_set1_epi32(wq);
          for (int v = 0; v < J; ++v) dj[r][v] = _mm512_dpbusd_epi32(dj[r][v], av[v], wb);
        }
      }
      for (int r = 0; r < R; ++r)
        for (int v = 0; v < J; ++v)
          isum[r][v] = _mm512_add_epi32(isum[r][v], _mm512_mullo_epi32(dj[r][v], _mm512_set1_epi32(rbk[r].sc[j])));
    }
    for (int v = 0; v < J; ++v) {
      __m512 da = _mm512_loadu_ps(tg[v].da.data() + b * 16);
      for (int r = 0; r < R; ++r) {
        acc[r][v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r][v]), _mm512_mul_ps(_mm512_set1_ps(rbk[r].d), da), acc[r][v]);
        if constexpr (Kind<Block>::MIN) {
          for (int j = 0; j < 8; ++j)
            acc[r][v] = _mm512_fmadd_ps(_mm512_set1_ps(rbk[r].neg_dmin_m[j]), _mm512_loadu_ps(tg[v].bs.data() + (b * 8 + j) * 16), acc[r][v]);
        }
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < J; ++v) {
      alignas(64) float out[16];
      _mm512_store_ps(out, acc[r][v]);
      for (int t = 0; t < tg[v].n; ++t) g.y[(t0 + v * LANES + t) * g.ldy + r0 + r] = out[t];
    }
  }
}

// A last partial group of at least this many tokens that completes a pair runs in the lanes, its
// empty lanes as zero tokens, instead of on the row kernel (a second pass over the weights). Prefill
// experts get ~32 +- 6 tokens each at 512 tokens; Q4_K, 64 rows x k 2048 streamed, one Zen 4 core
// (kernel-bench --gemm): 24 tokens 147 -> 156 GFLOP/s (useful flops), 28: 142 -> 182, 31: 148 -> 201;
// 20 tokens padded would be 130 against 142, and a pad that makes a lone group gains nothing.
constexpr int PAD_MIN_TOKENS = 8;

// Pairs of 16-token groups (one group at the end where the count is odd), then the rest of the
// tokens on `row_kernel`.
template <class Block>
void gemm_lanes(const GemmArgs& g, GemmFn row_kernel) {
  thread_local TokenGroup groups[2];
  const int64_t n_groups = g.n_tok / LANES, rest = g.n_tok % LANES;
  const bool pad = n_groups % 2 == 1 && rest >= PAD_MIN_TOKENS;
  const int64_t in_lanes = pad ? g.n_tok : n_groups * LANES;
  for (int64_t t0 = 0; t0 < in_lanes; t0 += 2 * LANES) {
    int J = t0 + LANES < in_lanes ? 2 : 1;
    for (int v = 0; v < J; ++v) build_group(g, t0 + v * LANES, groups[v]);
    int64_t r0 = 0;
    for (; r0 + 2 <= g.n_rows; r0 += 2) J == 2 ? tile<Block, 2, 2>(g, r0, t0, groups) : tile<Block, 2, 1>(g, r0, t0, groups);
    for (; r0 < g.n_rows; ++r0) J == 2 ? tile<Block, 1, 2>(g, r0, t0, groups) : tile<Block, 1, 1>(g, r0, t0, groups);
  }
  if (in_lanes < g.n_tok) {
    GemmArgs tail = g;
    tail.a = g.a + size_t(in_lanes) * g.a_stride;
    tail.n_tok = g.n_tok - in_lanes;
    tail.y = g.y + in_lanes * g.ldy;
    row_kernel(tail);
  }
}

}  // namespace

void gemm_q4_k_lanes_avx512vnni(const GemmArgs& g) { gemm_lanes<block_q4_K>(g, gemm_q4_k_avx512vnni); }
void gemm_q5_k_lanes_avx512vnni(const GemmArgs& g) { gemm_lanes<block_q5_K>(g, gemm_q5_k_avx512vnni); }
void gemm_q6_k_lanes_avx512vnni(const GemmArgs& g) { gemm_lanes<block_q6_K>(g, gemm_q6_k_avx512vnni); }

}  // namespace mixtile
