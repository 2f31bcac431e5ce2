// NeoX RoPE, scalar. Angles are formed in double (pos * inv_freq) so long positions keep their
// precision; the rotation itself is float.
#include "cpu/rope/rope.h"

#include <cmath>

namespace mixtile {

std::vector<double> rope_inv_freq(int head_dim, double theta) {
  std::vector<double> f(static_cast<size_t>(head_dim / 2));
  for (int i = 0; i < head_dim / 2; ++i) f[size_t(i)] = std::pow(theta, -2.0 * i / head_dim);
  return f;
}

void rope_table(int64_t n, int head_dim, const int32_t* pos, const double* inv_freq, std::vector<float>& cs,
                std::vector<float>& sn) {
  const int half = head_dim / 2;
  cs.resize(static_cast<size_t>(n * half));
  sn.resize(static_cast<size_t>(n * half));
  for (int64_t t = 0; t < n; ++t) {
    for (int i = 0; i < half; ++i) {
      double a = double(pos[t]) * inv_freq[i];
      cs[size_t(t * half + i)] = float(std::cos(a));
      sn[size_t(t * half + i)] = float(std::sin(a));
    }
  }
}

void rope_neox(float* x, int64_t n, int n_heads, int head_dim, const float* cs, const float* sn) {
  const int half = head_dim / 2;
  for (int64_t t = 0; t < n; ++t) {
    const float* c = cs + t * half;
    const float* s = sn + t * half;
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + (t * n_heads + h) * head_dim;
      for (int i = 0; i < half; ++i) {
        float a = v[i], b = v[i + half];
        v[i] = a * c[i] - b * s[i];
        v[i + half] = a * s[i] + b * c[i];
      }
    }
  }
}

}  // namespace mixtile
