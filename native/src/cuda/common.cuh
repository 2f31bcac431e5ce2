// Shared helpers of libmixtile-cuda: error reporting (status + per-thread message) and small
// device utilities (type conversion, warp reductions). Internal; the ABI is mixtile-cuda.h.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdarg>
#include <cstdint>

#include "mixtile-cuda.h"

namespace mixtile::cuda {

// Records a message for mxc_last_error() and returns `st`.
mxc_status fail(mxc_status st, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
// Maps a CUDA runtime error to a status and records "<where>: <cudaGetErrorName>: <string>".
mxc_status fail_cuda(cudaError_t err, const char* where);
// After a launch: reports a launch error (bad configuration, no kernel image for this device).
mxc_status check_launch(const char* kernel);
// Clears the message (a successful call leaves the previous one; this is for tests).
void clear_error();

inline cudaStream_t stream_of(mxc_stream* s) { return reinterpret_cast<cudaStream_t>(s); }

#define MXC_CHECK_ARG(cond, ...) \
  do {                           \
    if (!(cond)) return ::mixtile::cuda::fail(MXC_ERR_INVALID_ARG, __VA_ARGS__); \
  } while (0)
#define MXC_CUDA(call, where)                                                         \
  do {                                                                                \
    cudaError_t mxc_e_ = (call);                                                      \
    if (mxc_e_ != cudaSuccess) return ::mixtile::cuda::fail_cuda(mxc_e_, where);      \
  } while (0)

inline unsigned grid_1d(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  return unsigned(b < 65535 * 16 ? b : 65535 * 16);  // grid-stride loops cover the rest
}

// ---- device side ----
template <class T>
__device__ __forceinline__ float to_f32(T x);
template <>
__device__ __forceinline__ float to_f32<float>(float x) { return x; }
template <>
__device__ __forceinline__ float to_f32<__half>(__half x) { return __half2float(x); }
template <>
__device__ __forceinline__ float to_f32<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }

template <class T>
__device__ __forceinline__ T from_f32(float x);
template <>
__device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

}  // namespace mixtile::cuda
