// MoE kernels of libmixtile-cuda.
// Decode route (mxc_moe_route): a decode step's post-attention RMSNorm, router GEMV and softmax top-k as one
// kernel, the same float operations in the same order as mxc_rmsnorm + mxc_gemm_f32 + mxc_router_topk (so the
// same bits), writing the normed state and the routing wherever the caller says: mapped pinned host memory
// saves the copy to the host (issue 9: the three launches and the copy were ~48 us of a ~153 us layer).
// Add when ready (mxc_add_when_ready): the residual add of the experts' sum, queued before the host computes it;
// the GPU polls a flag in pinned memory and adds the pinned sum the moment the host sets it (no launch after the
// experts, no copy).
// Routed experts on the GPU (prefill), the two kernels around the per-expert GEMMs: gather the
// tokens routed to the GPU's experts into one BF16 matrix (rows grouped by expert), and combine the
// experts' outputs back into token order with the routing weights. The weights themselves are
// streamed raw (quantized) from host memory and dequantized with mxc_dequant_bf16; the GEMMs are
// mxc_gemm_bf16 and mxc_silu_mul. The addon's GpuExperts (native/src/gpu/gpu-experts.cc) drives them.
#include "common.cuh"
#include "router-topk.cuh"

namespace mixtile::cuda {

constexpr int ROUTE_THREADS = 256;  // rmsnorm_block's block size: the same sum of squares
constexpr int ROUTE_PREFETCH = 64;  // router values per lane loaded before the norm (a whole row up to hidden 2048)
constexpr int ROUTE_LOADS = 16;     // router loads in flight per lane past those
constexpr int ROUTE_MAX_HIDDEN = 8192;  // the normed row in shared memory (32 KiB)

// Grid (experts / 8, tokens). Each warp takes one expert's router row and starts its first loads at once (they do
// not depend on the norm, so their DRAM latency overlaps it). Each block norms its token's row into shared memory
// with mxc_rmsnorm's arithmetic (rmsnorm_warp's sum order for hidden <= 1024, rmsnorm_block's above; x and the
// norm weight loaded into registers all at once; block x == 0 also writes the row out); then each warp sums its
// row as gemm_f32_kernel does (lane-strided products added in k order, then a warp sum). The last block to finish
// (a counter in device memory, left at zero again) runs the top-k of every token. XPT: x values per thread,
// hidden <= XPT * 256.
template <int PER, int XPT>
__global__ void __launch_bounds__(ROUTE_THREADS)
    moe_route_kernel(const float* __restrict__ x, const float* __restrict__ norm_w, float eps,
                     const float* __restrict__ router, int n_tok, int hidden, int n_experts, int k, int renorm,
                     float* xn_out, float* logits, int32_t* ids, float* weights, unsigned* counter) {
  extern __shared__ float xs[];  // [hidden]
  __shared__ float part[32];
  __shared__ bool last;
  const int t = blockIdx.y;
  const int lane = threadIdx.x % 32;
  const int e = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  const bool has_e = e < n_experts;
  const float* wr = router + int64_t(has_e ? e : 0) * hidden;
  float wpre[ROUTE_PREFETCH];
#pragma unroll
  for (int j = 0; j < ROUTE_PREFETCH; ++j) {
    const int kk = lane + 32 * j;
    wpre[j] = has_e && kk < hidden ? __ldg(wr + kk) : 0.f;
  }
  const float* xr = x + int64_t(t) * hidden;
  float xv[XPT], wn[XPT];
#pragma unroll
  for (int j = 0; j < XPT; ++j) {
    const int i = threadIdx.x + ROUTE_THREADS * j;
    xv[j] = i < hidden ? xr[i] : 0.f;
    wn[j] = i < hidden ? norm_w[i] : 0.f;
  }
  float sumsq;
  if (hidden <= 1024) {  // rmsnorm_warp: lane-strided, one warp sum (every warp gets the same bits)
    float xw[32];
#pragma unroll
    for (int j = 0; j < 32; ++j) xw[j] = lane + 32 * j < hidden ? xr[lane + 32 * j] : 0.f;
    float ss = 0.f;
#pragma unroll
    for (int j = 0; j < 32; ++j)
      if (lane + 32 * j < hidden) ss += xw[j] * xw[j];
    sumsq = warp_sum(ss);
  } else {  // rmsnorm_block with 256 threads
    float ss = 0.f;
#pragma unroll
    for (int j = 0; j < XPT; ++j)
      if (threadIdx.x + ROUTE_THREADS * j < hidden) ss += xv[j] * xv[j];
    ss = warp_sum(ss);
    if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = ss;
    __syncthreads();
    if (threadIdx.x < 32) {
      float v = threadIdx.x < blockDim.x / 32 ? part[threadIdx.x] : 0.f;
      v = warp_sum(v);
      if (threadIdx.x == 0) part[0] = v;
    }
    __syncthreads();
    sumsq = part[0];
  }
  const float r = rsqrtf(sumsq / float(hidden) + eps);
#pragma unroll
  for (int j = 0; j < XPT; ++j) {
    const int i = threadIdx.x + ROUTE_THREADS * j;
    if (i < hidden) {
      const float v = xv[j] * r * wn[j];
      xs[i] = v;
      if (blockIdx.x == 0) xn_out[int64_t(t) * hidden + i] = v;
    }
  }
  __syncthreads();
  if (has_e) {
    float acc = 0.f;
#pragma unroll
    for (int j = 0; j < ROUTE_PREFETCH; ++j)
      if (lane + 32 * j < hidden) acc += xs[lane + 32 * j] * wpre[j];
    int kk = lane + 32 * ROUTE_PREFETCH;
    for (; kk + 32 * (ROUTE_LOADS - 1) < hidden; kk += 32 * ROUTE_LOADS) {
      float wv[ROUTE_LOADS];
#pragma unroll
      for (int j = 0; j < ROUTE_LOADS; ++j) wv[j] = __ldg(wr + kk + 32 * j);
#pragma unroll
      for (int j = 0; j < ROUTE_LOADS; ++j) acc += xs[kk + 32 * j] * wv[j];
    }
    for (; kk < hidden; kk += 32) acc += xs[kk] * __ldg(wr + kk);
    acc = warp_sum(acc);
    if (lane == 0) logits[int64_t(t) * n_experts + e] = acc;
  }
  __threadfence();  // this block's logits before its count
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(counter, 1u) == gridDim.x * gridDim.y - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();
  for (int tt = threadIdx.x / 32; tt < n_tok; tt += blockDim.x / 32)
    router_topk_warp<PER>(logits + int64_t(tt) * n_experts, n_experts, k, renorm, ids + int64_t(tt) * k,
                          weights + int64_t(tt) * k);
  if (threadIdx.x == 0) *counter = 0u;  // the next launch (stream order) counts from zero
}

// One block: thread 0 polls the host's flag (over the bus, uncached) until the host sets it, then every thread
// adds its share of the pinned sum (uncached loads: the host just wrote it) into x, and thread 0 clears the flag
// for the next layer. Past ~10 s of polling (%globaltimer) it gives up: flag 2, x untouched.
constexpr int WAIT_ADD_THREADS = 1024;
constexpr uint64_t WAIT_ADD_TIMEOUT_NS = 10'000'000'000ull;

__global__ void __launch_bounds__(WAIT_ADD_THREADS)
    add_when_ready_kernel(float* __restrict__ x, const float* sum, int64_t n, volatile uint32_t* flag) {
  __shared__ uint32_t seen;
  if (threadIdx.x == 0) {
    uint64_t t0, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    uint32_t f = *flag;
    while (f == 0) {
      __nanosleep(100);
      f = *flag;
      asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
      if (f == 0 && now - t0 > WAIT_ADD_TIMEOUT_NS) {
        *flag = 2u;
        f = 2u;
      }
    }
    seen = f;
  }
  __syncthreads();
  if (seen != 1u) return;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) x[i] += __ldcv(sum + i);
  __syncthreads();
  if (threadIdx.x == 0) {
    *flag = 0u;
    __threadfence_system();
  }
}

template <int XPT>
static void route_launch(dim3 grid, size_t shm, cudaStream_t st, int n_experts, const float* x, const float* norm_w,
                         float eps, const float* router, int n, int hidden, int k, int renorm, float* xn, float* logits,
                         int32_t* ids, float* weights, unsigned* c) {
  if (n_experts <= 128)
    moe_route_kernel<4, XPT><<<grid, ROUTE_THREADS, shm, st>>>(x, norm_w, eps, router, n, hidden, n_experts, k, renorm,
                                                               xn, logits, ids, weights, c);
  else if (n_experts <= 256)
    moe_route_kernel<8, XPT><<<grid, ROUTE_THREADS, shm, st>>>(x, norm_w, eps, router, n, hidden, n_experts, k, renorm,
                                                               xn, logits, ids, weights, c);
  else
    moe_route_kernel<32, XPT><<<grid, ROUTE_THREADS, shm, st>>>(x, norm_w, eps, router, n, hidden, n_experts, k,
                                                                renorm, xn, logits, ids, weights, c);
}

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

mxc_status mxc_moe_route(const float* x, const float* norm_w, float eps, const float* router, int64_t n, int hidden,
                         int n_experts, int k, int renormalize, float* xn, float* logits, int32_t* ids, float* weights,
                         uint32_t* counter, mxc_stream* s) {
  MXC_CHECK_ARG(x && norm_w && router && xn && logits && ids && weights && counter, "mxc_moe_route: null pointer");
  MXC_CHECK_ARG(hidden > 0 && hidden <= ROUTE_MAX_HIDDEN, "mxc_moe_route: hidden %d not in [1, %d]", hidden,
                ROUTE_MAX_HIDDEN);
  MXC_CHECK_ARG(n_experts > 0 && n_experts <= 1024, "mxc_moe_route: n_experts %d not in [1, 1024]", n_experts);
  MXC_CHECK_ARG(k > 0 && k <= 32 && k <= n_experts, "mxc_moe_route: k %d not in [1, min(32, n_experts)]", k);
  MXC_CHECK_ARG(n >= 0 && n <= 65535, "mxc_moe_route: tokens %lld not in [0, 65535]", (long long)n);
  if (n == 0) return MXC_OK;
  const dim3 grid(unsigned((n_experts + ROUTE_THREADS / 32 - 1) / (ROUTE_THREADS / 32)), unsigned(n));
  const size_t shm = size_t(hidden) * 4;
  cudaStream_t st = stream_of(s);
  auto* c = reinterpret_cast<unsigned*>(counter);
  if (hidden <= 2048) route_launch<8>(grid, shm, st, n_experts, x, norm_w, eps, router, int(n), hidden, k, renormalize,
                                     xn, logits, ids, weights, c);
  else route_launch<32>(grid, shm, st, n_experts, x, norm_w, eps, router, int(n), hidden, k, renormalize, xn, logits,
                        ids, weights, c);
  return check_launch("mxc_moe_route");
}

mxc_status mxc_add_when_ready(float* x, const float* sum, int64_t n, uint32_t* flag, mxc_stream* s) {
  MXC_CHECK_ARG(x && sum && flag, "mxc_add_when_ready: null pointer");
  MXC_CHECK_ARG(n >= 0, "mxc_add_when_ready: negative length");
  add_when_ready_kernel<<<1, WAIT_ADD_THREADS, 0, stream_of(s)>>>(x, sum, n, flag);
  return check_launch("mxc_add_when_ready");
}

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
