// Scalar row dequantization, following ggml's dequantize_row_* (ggml-quants.c) bit for bit.
#include "cpu/dequant/dequant.h"

namespace mixtile {

static void dq_q8_0(const block_q8_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    float d = fp16_to_fp32(b[i].d);
    for (int j = 0; j < QK8_0; ++j) y[i * QK8_0 + j] = d * b[i].qs[j];
  }
}

static void dq_q4_k(const block_q4_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
    const uint8_t* q = b[i].qs;
    int is = 0;
    for (int j = 0; j < QK_K; j += 64) {
      uint8_t sc, m;
      get_scale_min_k4(is + 0, b[i].scales, &sc, &m);
      float d1 = d * sc, m1 = dmin * m;
      get_scale_min_k4(is + 1, b[i].scales, &sc, &m);
      float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
      q += 32;
      is += 2;
    }
  }
}

static void dq_q5_k(const block_q5_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
    const uint8_t* ql = b[i].qs;
    const uint8_t* qh = b[i].qh;
    int is = 0;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0; j < QK_K; j += 64) {
      uint8_t sc, m;
      get_scale_min_k4(is + 0, b[i].scales, &sc, &m);
      float d1 = d * sc, m1 = dmin * m;
      get_scale_min_k4(is + 1, b[i].scales, &sc, &m);
      float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
      ql += 32;
      is += 2;
      u1 <<= 2;
      u2 <<= 2;
    }
  }
}

static void dq_q6_k(const block_q6_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    float d = fp16_to_fp32(b[i].d);
    const uint8_t* ql = b[i].ql;
    const uint8_t* qh = b[i].qh;
    const int8_t* sc = b[i].scales;
    for (int n = 0; n < QK_K; n += 128) {
      for (int l = 0; l < 32; ++l) {
        int is = l / 16;
        int q1 = int((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        int q2 = int((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        int q3 = int((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        int q4 = int((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l + 0] = d * sc[is + 0] * q1;
        y[l + 32] = d * sc[is + 2] * q2;
        y[l + 64] = d * sc[is + 4] * q3;
        y[l + 96] = d * sc[is + 6] * q4;
      }
      y += 128;
      ql += 64;
      qh += 32;
      sc += 8;
    }
  }
}

void dequantize_row(GgmlType type, const void* src, float* dst, int64_t k) {
  TypeTraits tt = type_traits(type);
  if (!type_supported(type) || k % tt.block_size != 0) {
    throw std::invalid_argument(std::string("dequantize_row: unsupported type or length for ") + tt.name);
  }
  int64_t nb = k / tt.block_size;
  switch (type) {
    case GgmlType::F32: std::memcpy(dst, src, size_t(k) * 4); break;
    case GgmlType::F16: {
      auto s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < k; ++i) dst[i] = fp16_to_fp32(s[i]);
      break;
    }
    case GgmlType::BF16: {
      auto s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < k; ++i) dst[i] = bf16_to_fp32(s[i]);
      break;
    }
    case GgmlType::Q8_0: dq_q8_0(static_cast<const block_q8_0*>(src), dst, nb); break;
    case GgmlType::Q4_K: dq_q4_k(static_cast<const block_q4_K*>(src), dst, nb); break;
    case GgmlType::Q5_K: dq_q5_k(static_cast<const block_q5_K*>(src), dst, nb); break;
    case GgmlType::Q6_K: dq_q6_k(static_cast<const block_q6_K*>(src), dst, nb); break;
    default: break;
  }
}

}  // namespace mixtile
