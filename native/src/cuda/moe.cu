// Routed experts on the GPU (prefill), the two kernels around the per-expert GEMMs: gather the
// tokens routed to the GPU's experts into one BF16 matrix (rows grouped by expert), and combine the
// experts' outputs back into token order with the routing weights. The weights themselves are
// streamed raw (quantized) from host memory and dequantized with mxc_dequant_bf16; the GEMMs are
// mxc_gemm_bf16 and mxc_silu_mul. The addon's GpuExperts (native/src/gpu/gpu-experts.cc) drives them.
#include "common.cuh"

namespace mixtile::cuda {

// Thread per 4 elements of an output row (hidden % 4 == 0 and 16-byte aligned rows: float4 loads).
__global__ void gather_rows_bf16_x4(const float* __restrict__ x, int64_t n_x, int64_t hidden,
                                    const int32_t* __restrict__ rows, int64_t n_rows, __nv_bfloat16* __restrict__ out) {
  const int64_t q = hidden / 4;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < n_rows * q;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = idx / q, c = (idx % q) * 4;
    const int32_t src = rows[r];
    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
    if (src >= 0 && src < n_x) v = *reinterpret_cast<const float4*>(x + int64_t(src) * hidden + c);
    __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y), hi = __floats2bfloat162_rn(v.z, v.w);
    uint2 u;
    u.x = *reinterpret_cast<uint32_t*>(&lo);
    u.y = *reinterpret_cast<uint32_t*>(&hi);
    *reinterpret_cast<uint2*>(out + r * hidden + c) = u;
  }
}

__global__ void gather_rows_bf16(const float* __restrict__ x, int64_t n_x, int64_t hidden,
                                 const int32_t* __restrict__ rows, int64_t n_rows, __nv_bfloat16* __restrict__ out) {
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < n_rows * hidden;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = idx / hidden, c = idx % hidden;
    const int32_t src = rows[r];
    out[idx] = __float2bfloat16_rn(src >= 0 && src < n_x ? x[int64_t(src) * hidden + c] : 0.f);
  }
}

// Thread per element of y: the token's top_k slots are summed in slot order (deterministic, no atomics).
__global__ void moe_combine_kernel(const float* __restrict__ o, int64_t n_o, int64_t hidden,
                                   const int32_t* __restrict__ pos, const float* __restrict__ w, int64_t n, int top_k,
                                   float* __restrict__ y, int accumulate) {
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < n * hidden;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = idx / hidden, c = idx % hidden;
    float acc = accumulate ? y[idx] : 0.f;
    for (int j = 0; j < top_k; ++j) {
      const int32_t p = pos[t * top_k + j];
      if (p >= 0 && p < n_o) acc += w[t * top_k + j] * o[int64_t(p) * hidden + c];
    }
    y[idx] = acc;
  }
}

}  // namespace mixtile::cuda

using namespace mixtile::cuda;

extern "C" {

mxc_status mxc_gather_rows_bf16(const float* x, int64_t n_x, int64_t hidden, const int32_t* rows, int64_t n_rows,
                                uint16_t* out, mxc_stream* s) {
  MXC_CHECK_ARG(n_x >= 0 && hidden > 0 && n_rows >= 0 && hidden < (1ll << 31),
                "mxc_gather_rows_bf16: bad shape n_x=%lld hidden=%lld n_rows=%lld", (long long)n_x, (long long)hidden,
                (long long)n_rows);
  if (n_rows == 0) return MXC_OK;
  MXC_CHECK_ARG(x && rows && out, "mxc_gather_rows_bf16: null pointer");
  auto* o = reinterpret_cast<__nv_bfloat16*>(out);
  const bool vec = hidden % 4 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(out) % 8 == 0;
  if (vec)
    gather_rows_bf16_x4<<<grid_1d(n_rows * (hidden / 4), 256), 256, 0, stream_of(s)>>>(x, n_x, hidden, rows, n_rows, o);
  else
    gather_rows_bf16<<<grid_1d(n_rows * hidden, 256), 256, 0, stream_of(s)>>>(x, n_x, hidden, rows, n_rows, o);
  return check_launch("mxc_gather_rows_bf16");
}

mxc_status mxc_moe_combine(const float* o, int64_t n_o, int64_t hidden, const int32_t* pos, const float* w, int64_t n,
                           int top_k, float* y, int accumulate, mxc_stream* s) {
  MXC_CHECK_ARG(n_o >= 0 && hidden > 0 && n >= 0 && top_k >= 1 && top_k <= 64,
                "mxc_moe_combine: bad shape n_o=%lld hidden=%lld n=%lld top_k=%d", (long long)n_o, (long long)hidden,
                (long long)n, top_k);
  if (n == 0) return MXC_OK;
  MXC_CHECK_ARG(pos && w && y && (o || n_o == 0), "mxc_moe_combine: null pointer");
  moe_combine_kernel<<<grid_1d(n * hidden, 256), 256, 0, stream_of(s)>>>(o, n_o, hidden, pos, w, n, top_k, y,
                                                                         accumulate);
  return check_launch("mxc_moe_combine");
}

}  // extern "C"
