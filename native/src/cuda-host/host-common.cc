// Errors and f16 conversion of libmixtile-cuda-host (host-common.h).
#include "host-common.h"

#include <cstdarg>
#include <cstdio>
#include <string>

namespace mixtile::cuda_host {

static thread_local std::string g_error;

mxc_status fail(mxc_status st, const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  g_error = buf;
  return st;
}

const char* last_error() { return g_error.c_str(); }

float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16, e = (h >> 10) & 31, m = h & 0x3ff;
  if (e == 0) {  // zero or subnormal: m * 2^-24, exact in f32
    float v = float(m) * bits_to_f32(0x33800000u);
    return sign ? -v : v;
  }
  if (e == 31) return bits_to_f32(sign | 0x7f800000u | (m << 13));
  return bits_to_f32(sign | ((e + 112) << 23) | (m << 13));
}

// Round to nearest even, subnormals included (F. Giesen's float_to_half_fast3_rtne). Relies on the
// default FP rounding mode and no -ffast-math.
uint16_t f32_to_f16(float f) {
  const uint32_t f32_inf = 255u << 23, f16_max = (127u + 16) << 23;
  const uint32_t denorm_magic = ((127u - 15) + (23 - 10) + 1) << 23;
  uint32_t x = f32_to_bits(f);
  const uint32_t sign = x & 0x80000000u;
  x ^= sign;
  uint16_t o;
  if (x >= f16_max) {
    o = x > f32_inf ? 0x7fff : 0x7c00;  // NaN (CUDA's canonical one) or overflow to infinity
  } else if (x < (113u << 23)) {        // the half is subnormal or zero: let the FPU round
    o = uint16_t(f32_to_bits(bits_to_f32(x) + bits_to_f32(denorm_magic)) - denorm_magic);
  } else {
    const uint32_t mant_odd = (x >> 13) & 1;
    x += ((15u - 127) << 23) + 0xfff;
    x += mant_odd;
    o = uint16_t(x >> 13);
  }
  return uint16_t(o | (sign >> 16));
}

}  // namespace mixtile::cuda_host
