// x += y over n rows of `width`: the residual adds after attention and the FFN. On the pool from 16 rows (a
// 512-token prefill's 4 MB add took ~1 ms on one thread at 16 threads), inline for decode; the same float add
// per element either way.
#pragma once
#include <algorithm>
#include <cstdint>

#include "threadpool.h"

namespace mixtile {

inline void residual_add(float* x, const float* y, int64_t n, int64_t width) {
  constexpr int64_t ROWS = 16;
  if (n < ROWS) {
    for (int64_t i = 0; i < n * width; ++i) x[i] += y[i];
    return;
  }
  parallel_for((n + ROWS - 1) / ROWS, [&](int64_t c, int) {
    const int64_t end = std::min(n, (c + 1) * ROWS) * width;
    for (int64_t i = c * ROWS * width; i < end; ++i) x[i] += y[i];
  });
}

}  // namespace mixtile
