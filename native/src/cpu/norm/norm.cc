// RMSNorm: the scalar reference and the dispatch. The sum of squares is accumulated in double, so
// the result barely depends on summation order (the AVX-512 path sums in 16 double lanes).
#include "cpu/norm/norm.h"

#include <cmath>

#include "cpu/isa.h"

namespace mixtile {

void rms_norm_scalar(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += double(xr[i]) * xr[i];
    float scale = float(1.0 / std::sqrt(ss / double(dim) + double(eps)));
    for (int64_t i = 0; i < dim; ++i) yr[i] = xr[i] * scale * w[i];
  }
}

void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps) {
  if (int(active_isa()) >= int(Isa::avx512)) return rms_norm_avx512(x, w, y, rows, dim, eps);
  rms_norm_scalar(x, w, y, rows, dim, eps);
}

}  // namespace mixtile
