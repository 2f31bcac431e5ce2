// Dequantize-at-load of libmixtile-cuda-host: ggml Q8_0 / Q4_K / Q5_K / Q6_K blocks and F16/F32 to BF16.
// Each element is computed in the float order of ggml's dequantize_row_* (as the GPU kernels do), so
// the BF16 result equals the CPU's rounded to BF16, bit for bit.
#include "host-common.h"

using namespace mixtile::cuda_host;

namespace {

constexpr int QK8_0 = 32, Q8_0_BYTES = 34;
constexpr int QK_K = 256, Q4_K_BYTES = 144, Q5_K_BYTES = 176, Q6_K_BYTES = 210;

float half_at(const uint8_t* p) { return f16_to_f32(uint16_t(p[0] | p[1] << 8)); }

void dequant_q8_0(const uint8_t* src, int64_t n, uint16_t* out) {
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* b = src + (i / QK8_0) * Q8_0_BYTES;
    out[i] = f32_to_bf16(half_at(b) * float(int8_t(b[2 + i % QK8_0])));
  }
}

// x = d * sc * q - dmin * m; sub-block is = j / 32 of the 256 (get_scale_min_k4 in native/src/tensor.h).
// Q4_K: d, dmin, scales[12], qs[128]. Q5_K adds qh[32] before qs: bit `is` of qh[l] is the 5th bit.
template <bool Q5>
void dequant_q4_q5_k(const uint8_t* src, int64_t n, uint16_t* out) {
  constexpr int BYTES = Q5 ? Q5_K_BYTES : Q4_K_BYTES;
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* b = src + (i / QK_K) * BYTES;
    const int j = int(i % QK_K), chunk = j / 64, hi = (j % 64) / 32, l = j % 32, is = 2 * chunk + hi;
    const uint8_t* sc = b + 4;
    const uint8_t* qs = b + (Q5 ? 48 : 16);
    uint8_t s, m;
    if (is < 4) {
      s = sc[is] & 63;
      m = sc[is + 4] & 63;
    } else {
      s = (sc[is + 4] & 0xF) | ((sc[is - 4] >> 6) << 4);
      m = (sc[is + 4] >> 4) | ((sc[is] >> 6) << 4);
    }
    const float d1 = half_at(b) * float(s), m1 = half_at(b + 2) * float(m);
    int q = (qs[32 * chunk + l] >> (4 * hi)) & 0xF;
    if (Q5) q += ((b[16 + l] >> is) & 1) << 4;
    out[i] = f32_to_bf16(d1 * float(q) - m1);
  }
}

// ql[128] qh[64] scales[16] d: element 128h + 32qq + l takes the low (qq < 2) or high nibble of
// ql[64h + l + 32(qq&1)], bits 2qq..2qq+1 of qh[32h + l], and scale 8h + l/16 + 2qq.
void dequant_q6_k(const uint8_t* src, int64_t n, uint16_t* out) {
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* b = src + (i / QK_K) * Q6_K_BYTES;
    const int j = int(i % QK_K), h = j / 128, r = j % 128, qq = r / 32, l = r % 32;
    int lo = b[64 * h + l + 32 * (qq & 1)];
    lo = qq < 2 ? (lo & 0xF) : (lo >> 4);
    const int q = (lo | (((b[128 + 32 * h + l] >> (2 * qq)) & 3) << 4)) - 32;
    const int8_t sc = int8_t(b[192 + 8 * h + l / 16 + 2 * qq]);
    out[i] = f32_to_bf16(half_at(b + 208) * float(sc) * float(q));
  }
}

}  // namespace

extern "C" {

size_t mxc_dtype_bytes(mxc_dtype t, int64_t n) {
  if (n < 0) return 0;
  switch (t) {
    case MXC_F32: return size_t(n) * 4;
    case MXC_F16:
    case MXC_BF16: return size_t(n) * 2;
    case MXC_Q8_0: return n % QK8_0 ? 0 : size_t(n / QK8_0) * Q8_0_BYTES;
    case MXC_Q4_K: return n % QK_K ? 0 : size_t(n / QK_K) * Q4_K_BYTES;
    case MXC_Q5_K: return n % QK_K ? 0 : size_t(n / QK_K) * Q5_K_BYTES;
    case MXC_Q6_K: return n % QK_K ? 0 : size_t(n / QK_K) * Q6_K_BYTES;
  }
  return 0;
}

mxc_status mxc_dequant_bf16(const void* src, mxc_dtype t, int64_t n, uint16_t* out, mxc_stream* s) {
  MXH_CHECK_ARG(src && out, "mxc_dequant_bf16: null pointer");
  MXH_CHECK_ARG(n >= 0, "mxc_dequant_bf16: negative n");
  if (n == 0) return MXC_OK;
  MXH_CHECK_ARG(mxc_dtype_bytes(t, n) != 0,
                "mxc_dequant_bf16: %lld elements are not whole blocks of type %d (or the type is not "
                "F32, F16, BF16, Q8_0, Q4_K, Q5_K, Q6_K)",
                (long long)n, int(t));
  MXH_DEV(src, mxc_dtype_bytes(t, n), "mxc_dequant_bf16");
  MXH_DEV(out, size_t(n) * 2, "mxc_dequant_bf16");
  const auto* in = static_cast<const uint8_t*>(src);
  return submit(s, [=] {
    switch (t) {
      case MXC_Q8_0: dequant_q8_0(in, n, out); break;
      case MXC_Q4_K: dequant_q4_q5_k<false>(in, n, out); break;
      case MXC_Q5_K: dequant_q4_q5_k<true>(in, n, out); break;
      case MXC_Q6_K: dequant_q6_k(in, n, out); break;
      case MXC_F16:
        for (int64_t i = 0; i < n; ++i) out[i] = f32_to_bf16(half_at(in + 2 * i));
        break;
      case MXC_F32:
        for (int64_t i = 0; i < n; ++i) {
          float v;
          std::memcpy(&v, in + 4 * i, 4);
          out[i] = f32_to_bf16(v);
        }
        break;
      case MXC_BF16: std::memmove(out, src, size_t(n) * 2); break;
    }
  });
}

}  // extern "C"
