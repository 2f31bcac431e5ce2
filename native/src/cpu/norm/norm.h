// RMSNorm over rows: y = x / sqrt(mean(x^2) + eps) * w (Qwen3, llama). Used for the block
// pre-norms ([tokens, hidden]) and the per-head q/k norms ([tokens * heads, head_dim]).
#pragma once
#include <cstdint>

namespace mixtile {

// x, y: [rows, dim] F32 (y may equal x); w: [dim]. AVX-512 where the active ISA allows.
void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps);

// The scalar reference and the AVX-512 path (norm-avx512.cc).
void rms_norm_scalar(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps);
void rms_norm_avx512(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps);

}  // namespace mixtile
