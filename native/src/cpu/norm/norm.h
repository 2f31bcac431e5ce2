// RMSNorm over rows: y = x / sqrt(mean(x^2) + eps) * w (Qwen3, llama). Used for the block
// pre-norms ([tokens, hidden]) and the per-head q/k norms ([tokens * heads, head_dim]).
#pragma once
#include <cstdint>

namespace mixtile {

// x, y: [rows, dim] F32 (y may equal x); w: [dim].
void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps);

}  // namespace mixtile
