// RMSNorm: the scalar reference and the dispatch. The sum of squares is accumulated in double, so
// the result barely depends on summation order (the AVX-512 path sums in 16 double lanes).
#include "cpu/norm/norm.h"

#include <algorithm>
#include <cmath>

#include "cpu/isa.h"
#include "threadpool.h"

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

// Rows are independent: a prefill's 512 x 2048 takes ~1 ms on one thread, twice a layer, so calls of 64K+
// elements go to the pool in chunks of 16 rows (the same arithmetic per row). Smaller ones (decode's hidden row,
// its 32 q-head rows) stay inline: a pool job costs more than they do. Nested in a pool task it runs inline.
void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps) {
  const auto fn = int(active_isa()) >= int(Isa::avx512) ? rms_norm_avx512 : rms_norm_scalar;
  constexpr int64_t CHUNK = 16;
  if (rows < 2 * CHUNK || rows * dim < 64 * 1024) return fn(x, w, y, rows, dim, eps);
  parallel_for((rows + CHUNK - 1) / CHUNK, [&](int64_t c, int) {
    const int64_t r0 = c * CHUNK;
    fn(x + r0 * dim, w, y + r0 * dim, std::min(CHUNK, rows - r0), dim, eps);
  });
}

}  // namespace mixtile
