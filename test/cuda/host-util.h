// Host helpers shared by the CUDA test and benchmark programs: half/bf16 conversion (round to nearest
// even, as the GPU does), random fills, a status check that prints mxc_last_error().
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "mixtile-cuda.h"

namespace mxt {

inline float bf16_to_f32(uint16_t h) {
  uint32_t b = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
inline uint16_t f32_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffff) > 0x7f800000) return uint16_t((x >> 16) | 64);
  return uint16_t((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}
inline float f16_to_f32(uint16_t h) {
  uint32_t s = uint32_t(h & 0x8000) << 16, e = (h >> 10) & 31, m = h & 0x3ff, b;
  if (e == 0) {
    float v = std::ldexp(float(m), -24);
    return s ? -v : v;
  }
  if (e == 31) b = s | 0x7f800000 | (m << 13);
  else b = s | ((e + 112) << 23) | (m << 13);
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
inline uint16_t f32_to_f16(float f) {
  // Via the exact value: pick the nearer representable half, ties to even (finite, |f| < 65520).
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint16_t sign = uint16_t((x >> 16) & 0x8000);
  float a = std::fabs(f);
  if (a >= 65520.f) return sign | 0x7c00;
  int e;
  std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  int q = e - 11;     // unit of the last place: 2^(e-11) for normals, 2^-24 for subnormals
  if (q < -24) q = -24;
  double units = std::ldexp(double(a), -q);
  double r = std::nearbyint(units);  // default rounding mode: to nearest even
  double v = std::ldexp(r, q);
  // Re-encode v.
  if (v == 0) return sign;
  int ve;
  std::frexp(v, &ve);
  if (ve - 1 < -14) return sign | uint16_t(std::ldexp(v, 24));  // subnormal
  uint16_t he = uint16_t(ve - 1 + 15);
  uint16_t hm = uint16_t(std::ldexp(v, -(ve - 1)) * 1024.0 - 1024.0);
  return sign | uint16_t(he << 10) | hm;
}

struct Rng {
  std::mt19937_64 g;
  explicit Rng(uint64_t seed) : g(seed) {}
  float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(g); }
  float normal() { return std::normal_distribution<float>(0.f, 1.f)(g); }
  uint32_t u32() { return uint32_t(g()); }
  std::vector<float> normals(size_t n, float scale = 1.f) {
    std::vector<float> v(n);
    for (auto& x : v) x = normal() * scale;
    return v;
  }
};

#define MXT_CHECK(call)                                                                      \
  do {                                                                                       \
    mxc_status st_ = (call);                                                                 \
    if (st_ != MXC_OK) {                                                                     \
      std::fprintf(stderr, "%s:%d: %s -> status %d: %s\n", __FILE__, __LINE__, #call, int(st_), \
                   mxc_last_error());                                                        \
      std::exit(2);                                                                          \
    }                                                                                        \
  } while (0)

// A device buffer that frees itself.
struct Dev {
  void* p = nullptr;
  size_t bytes = 0;
  explicit Dev(size_t b) : bytes(b) { MXT_CHECK(mxc_malloc(&p, b)); }
  ~Dev() { mxc_free(p); }
  Dev(const Dev&) = delete;
  template <class T>
  T* as() const { return static_cast<T*>(p); }
  template <class T>
  void put(const std::vector<T>& v) { MXT_CHECK(mxc_memcpy_h2d(p, v.data(), v.size() * sizeof(T), nullptr)); }
  template <class T>
  std::vector<T> get(size_t n) const {
    std::vector<T> v(n);
    MXT_CHECK(mxc_memcpy_d2h(v.data(), p, n * sizeof(T), nullptr));
    MXT_CHECK(mxc_stream_sync(nullptr));
    return v;
  }
  void poison() { MXT_CHECK(mxc_memset(p, 0xff, bytes, nullptr)); }  // NaN in f32/f16/bf16
};

}  // namespace mxt
