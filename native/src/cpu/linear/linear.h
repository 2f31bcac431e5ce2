// Dense linear layer y = x W^T on CPU, W [m rows, k] of any supported weight type, x F32.
// GEMV for one token, tiled GEMM for many (weight blocks reused across a tile of tokens).
#pragma once
#include <cstdint>
#include <memory>

#include "cpu/matmul/matmul.h"
#include "tensor.h"

namespace mixtile {

struct LinearWeight {
  Weight w;     // ne[0] = k (input features), ne[1] = m (output features); keeps its owner alive
  int64_t k = 0;
  int64_t m = 0;
};

// Checks the type and shape (2-D, supported type) and prepares the weight; throws std::invalid_argument.
std::shared_ptr<LinearWeight> linear_load(const Weight& w);

// x: [n, k] F32 row-major; y: [n, m] F32 row-major, overwritten. Runs on the pool; callable
// from other native ops (not from inside a parallel_for task: it then runs serially).
void linear_forward(const LinearWeight& lw, const float* x, int64_t n, float* y);

}  // namespace mixtile
