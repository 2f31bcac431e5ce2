// Scalar GEMM references: plain loops, one dot product per (row, token), correct for every
// shape. Integer dots follow ggml's vec_dot_*_q8_* (ggml-cpu quants.c, generic versions).
#include "cpu/matmul/matmul.h"

namespace mixtile {
namespace {

template <class Dot>
void gemm_loop(const GemmArgs& g, Dot dot) {
  for (int64_t t = 0; t < g.n_tok; ++t) {
    const uint8_t* a = g.a + size_t(t) * g.a_stride;
    for (int64_t r = 0; r < g.n_rows; ++r) g.y[t * g.ldy + r] = dot(g.w + size_t(r) * g.w_stride, a, g.k);
  }
}

float dot_f32(const uint8_t* w, const uint8_t* a, int64_t k) {
  auto x = reinterpret_cast<const float*>(w);
  auto y = reinterpret_cast<const float*>(a);
  float s = 0;
  for (int64_t i = 0; i < k; ++i) s += x[i] * y[i];
  return s;
}

float dot_f16(const uint8_t* w, const uint8_t* a, int64_t k) {
  auto x = reinterpret_cast<const uint16_t*>(w);
  auto y = reinterpret_cast<const float*>(a);
  float s = 0;
  for (int64_t i = 0; i < k; ++i) s += fp16_to_fp32(x[i]) * y[i];
  return s;
}

float dot_bf16(const uint8_t* w, const uint8_t* a, int64_t k) {
  auto x = reinterpret_cast<const uint16_t*>(w);
  auto y = reinterpret_cast<const uint16_t*>(a);
  float s = 0;
  for (int64_t i = 0; i < k; ++i) s += bf16_to_fp32(x[i]) * bf16_to_fp32(y[i]);
  return s;
}

float dot_q8_0(const uint8_t* w, const uint8_t* a, int64_t k) {
  auto x = reinterpret_cast<const block_q8_0*>(w);
  auto y = reinterpret_cast<const block_q8_0*>(a);
  float s = 0;
  for (int64_t i = 0; i < k / QK8_0; ++i) {
    int sumi = 0;
    for (int j = 0; j < QK8_0; ++j) sumi += int(x[i].qs[j]) * int(y[i].qs[j]);
    s += fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d) * float(sumi);
  }
  return s;
}

float dot_q4_k(const uint8_t* w, const uint8_t* a, int64_t k) {
  auto x = reinterpret_cast<const block_q4_K*>(w);
  auto y = reinterpret_cast<const block_q8_K*>(a);
  float s = 0;
  for (int64_t i = 0; i < k / QK_K; ++i) {
    int sumi = 0, summ = 0;
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      get_scale_min_k4(j, x[i].scales, &sc, &m);
      const uint8_t* q = x[i].qs + (j / 2) * 32;
      const int8_t* q8 = y[i].qs + j * 32;
      int d = 0;
      for (int l = 0; l < 32; ++l) d += int((j & 1) ? q[l] >> 4 : q[l] & 0xF) * q8[l];
      sumi += int(sc) * d;
      summ += int(m) * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
    }
    s += y[i].d * (fp16_to_fp32(x[i].d) * float(sumi) - fp16_to_fp32(x[i].dmin) * float(summ));
  }
  return s;
}

float dot_q5_k(const uint8_t* w, const uint8_t* a, int64_t k) {
  auto x = reinterpret_cast<const block_q5_K*>(w);
  auto y = reinterpret_cast<const block_q8_K*>(a);
  float s = 0;
  for (int64_t i = 0; i < k / QK_K; ++i) {
    int sumi = 0, summ = 0;
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      get_scale_min_k4(j, x[i].scales, &sc, &m);
      const uint8_t* q = x[i].qs + (j / 2) * 32;
      const int8_t* q8 = y[i].qs + j * 32;
      int d = 0;
      for (int l = 0; l < 32; ++l) {
        int v = ((j & 1) ? q[l] >> 4 : q[l] & 0xF) + ((x[i].qh[l] >> j) & 1 ? 16 : 0);
        d += v * q8[l];
      }
      sumi += int(sc) * d;
      summ += int(m) * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
    }
    s += y[i].d * (fp16_to_fp32(x[i].d) * float(sumi) - fp16_to_fp32(x[i].dmin) * float(summ));
  }
  return s;
}

float dot_q6_k(const uint8_t* w, const uint8_t* a, int64_t k) {
  auto x = reinterpret_cast<const block_q6_K*>(w);
  auto y = reinterpret_cast<const block_q8_K*>(a);
  float s = 0;
  for (int64_t i = 0; i < k / QK_K; ++i) {
    int8_t q[QK_K];
    for (int n = 0; n < 2; ++n) {
      const uint8_t* ql = x[i].ql + 64 * n;
      const uint8_t* qh = x[i].qh + 32 * n;
      int8_t* o = q + 128 * n;
      for (int l = 0; l < 32; ++l) {
        o[l + 0] = int8_t(((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
        o[l + 32] = int8_t(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
        o[l + 64] = int8_t(((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
        o[l + 96] = int8_t(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
      }
    }
    int sumi = 0;
    for (int sb = 0; sb < 16; ++sb) {
      int d = 0;
      for (int l = 0; l < 16; ++l) d += int(q[sb * 16 + l]) * y[i].qs[sb * 16 + l];
      sumi += int(x[i].scales[sb]) * d;
    }
    s += fp16_to_fp32(x[i].d) * y[i].d * float(sumi);
  }
  return s;
}

}  // namespace

void gemm_f32_scalar(const GemmArgs& g) { gemm_loop(g, dot_f32); }
void gemm_f16_scalar(const GemmArgs& g) { gemm_loop(g, dot_f16); }
void gemm_bf16_scalar(const GemmArgs& g) { gemm_loop(g, dot_bf16); }
void gemm_q8_0_scalar(const GemmArgs& g) { gemm_loop(g, dot_q8_0); }
void gemm_q4_k_scalar(const GemmArgs& g) { gemm_loop(g, dot_q4_k); }
void gemm_q5_k_scalar(const GemmArgs& g) { gemm_loop(g, dot_q5_k); }
void gemm_q6_k_scalar(const GemmArgs& g) { gemm_loop(g, dot_q6_k); }

}  // namespace mixtile
