// Dense linear layer y = x W^T on CPU, W [m rows, k] of any supported weight type, x F32.
// GEMV for one token, tiled GEMM for many (weight blocks reused across a tile of tokens).
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "cpu/matmul/matmul.h"
#include "tensor.h"

namespace mixtile {

struct LinearWeight {
  Weight w;     // ne[0] = k (input features), ne[1] = m (output features); keeps its owner alive
  int64_t k = 0;
  int64_t m = 0;
  // AMX panels of w (cpu/amx/amx-linear.h), used by calls with many tokens; nullptr when none.
  std::shared_ptr<void> amx;
};

// Checks the type and shape (2-D, supported type) and prepares the weight; throws std::invalid_argument.
// backend: "auto" | "AMXBF16" | "AMXInt8" | "AVX512" (amx-linear.h says what each repacks).
std::shared_ptr<LinearWeight> linear_load(const Weight& w, const std::string& backend = "auto");
// Name of the path a call with n tokens takes: "AMXBF16" / "AMXInt8", or nullptr for the GEMM
// kernels over the source weights (their name comes from gemm_select).
const char* linear_amx_name(const LinearWeight& lw, int64_t n);

// x: [n, k] F32 row-major; y: [n, m] F32 row-major, overwritten. Runs on the pool; callable
// from other native ops (not from inside a parallel_for task: it then runs serially).
void linear_forward(const LinearWeight& lw, const float* x, int64_t n, float* y);

// Several layers on the same input (attention's q/k/v): ys[i] = x ws[i]^T, each [n, ws[i]->m].
// All ws[i]->k must be equal (std::invalid_argument otherwise). Layers that take their AMX panels
// at n run one by one; the rest share one activation conversion per activation type and one pool
// job (one barrier instead of one per layer; at one token, small k/v projections alone cannot
// keep every thread streaming). Results equal linear_forward's, layer by layer.
void linear_forward_multi(const LinearWeight* const* ws, int count, const float* x, int64_t n, float* const* ys);

}  // namespace mixtile
