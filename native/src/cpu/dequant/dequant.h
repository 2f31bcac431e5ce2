// Row dequantization to F32 (scalar): embedding rows, small norms, and test references.
#pragma once
#include <cstdint>

#include "tensor.h"

namespace mixtile {

// Decodes k elements (a whole number of blocks of `type`) from src into dst[k].
// Types: F32, F16, BF16, Q8_0, Q4_K, Q5_K, Q6_K; throws std::invalid_argument for others.
void dequantize_row(GgmlType type, const void* src, float* dst, int64_t k);

}  // namespace mixtile
