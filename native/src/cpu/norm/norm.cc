// RMSNorm, scalar: a few hundred elements per row, far below the matmuls around it. The sum of
// squares is accumulated in double so the norm does not depend on summation order.
#include "cpu/norm/norm.h"

#include <cmath>

namespace mixtile {

void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += double(xr[i]) * xr[i];
    float scale = float(1.0 / std::sqrt(ss / double(dim) + double(eps)));
    for (int64_t i = 0; i < dim; ++i) yr[i] = xr[i] * scale * w[i];
  }
}

}  // namespace mixtile
