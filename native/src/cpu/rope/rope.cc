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

void rope_neox(float* x, int64_t n, int n_heads, int head_dim, const int32_t* pos, const double* inv_freq) {
  const int half = head_dim / 2;
  std::vector<float> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
  for (int64_t t = 0; t < n; ++t) {
    for (int i = 0; i < half; ++i) {
      double a = double(pos[t]) * inv_freq[i];
      cs[size_t(i)] = float(std::cos(a));
      sn[size_t(i)] = float(std::sin(a));
    }
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + (t * n_heads + h) * head_dim;
      for (int i = 0; i < half; ++i) {
        float a = v[i], b = v[i + half];
        v[i] = a * cs[size_t(i)] - b * sn[size_t(i)];
        v[i + half] = a * sn[size_t(i)] + b * cs[size_t(i)];
      }
    }
  }
}

}  // namespace mixtile
