// Activation conversion (F32 -> the weight type's act type), scalar. Q8_0 and Q8_K follow ggml's
// quantize_row_q8_0 / quantize_row_q8_K (round to nearest, scale = max|x| / 127).
#include <cmath>

#include "cpu/matmul/matmul.h"

namespace mixtile {

GgmlType act_type_for(GgmlType wtype) {
  switch (wtype) {
    case GgmlType::BF16: return GgmlType::BF16;
    case GgmlType::Q8_0: return GgmlType::Q8_0;
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K: return GgmlType::Q8_K;
    default: return GgmlType::F32;
  }
}

size_t act_row_bytes(GgmlType wtype, int64_t k) { return row_bytes(act_type_for(wtype), k); }

size_t act_row_stride(GgmlType wtype, int64_t k) {
  size_t b = act_row_bytes(wtype, k);
  return b % 512 == 0 ? b + 64 : b;
}

static void quantize_q8_0(const float* x, int64_t k, block_q8_0* y) {
  for (int64_t i = 0; i < k / QK8_0; ++i) {
    const float* xb = x + i * QK8_0;
    float amax = 0;
    for (int j = 0; j < QK8_0; ++j) amax = std::fmax(amax, std::fabs(xb[j]));
    float d = amax / 127.f;
    float id = d ? 1.f / d : 0.f;
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < QK8_0; ++j) y[i].qs[j] = int8_t(std::nearbyint(xb[j] * id));
  }
}

static void quantize_q8_k(const float* x, int64_t k, block_q8_K* y) {
  for (int64_t i = 0; i < k / QK_K; ++i) {
    const float* xb = x + i * QK_K;
    float amax = 0;
    for (int j = 0; j < QK_K; ++j) amax = std::fmax(amax, std::fabs(xb[j]));
    float d = amax / 127.f;
    float id = d ? 1.f / d : 0.f;
    y[i].d = d;
    for (int j = 0; j < QK_K; ++j) {
      int v = int(std::nearbyint(xb[j] * id));
      y[i].qs[j] = int8_t(v > 127 ? 127 : (v < -127 ? -127 : v));
    }
    for (int g = 0; g < QK_K / 16; ++g) {
      int s = 0;
      for (int j = 0; j < 16; ++j) s += y[i].qs[g * 16 + j];
      y[i].bsums[g] = int16_t(s);
    }
  }
}

void convert_act_row(GgmlType wtype, const float* x, int64_t k, void* dst) {
  if (int(active_isa()) >= int(Isa::avx512)) return convert_act_row_avx512(wtype, x, k, dst);
  switch (act_type_for(wtype)) {
    case GgmlType::BF16: {
      auto y = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < k; ++i) y[i] = fp32_to_bf16(x[i]);
      break;
    }
    case GgmlType::Q8_0: quantize_q8_0(x, k, static_cast<block_q8_0*>(dst)); break;
    case GgmlType::Q8_K: quantize_q8_k(x, k, static_cast<block_q8_K*>(dst)); break;
    default: std::memcpy(dst, x, size_t(k) * 4); break;
  }
}

}  // namespace mixtile

namespace mixtile {

void silu_mul(float* g, const float* u, int64_t n) {
  if (int(active_isa()) >= int(Isa::avx512)) return silu_mul_avx512(g, u, n);
  for (int64_t i = 0; i < n; ++i) g[i] = g[i] / (1.f + std::exp(-g[i])) * u[i];
}

}  // namespace mixtile
