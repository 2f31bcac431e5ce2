// What one linear_forward call costs, for the op profile: weight bytes read, multiply-add FLOPs.
#pragma once
#include <cstdint>

#include "cpu/linear/linear.h"

namespace mixtile {

inline uint64_t linear_bytes(const LinearWeight& lw) { return uint64_t(lw.m) * uint64_t(lw.w.row_bytes); }
inline uint64_t linear_flops(const LinearWeight& lw, int64_t n) { return 2 * uint64_t(n) * uint64_t(lw.m) * uint64_t(lw.k); }

}  // namespace mixtile
