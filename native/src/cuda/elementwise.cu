// Small operators of libmixtile-cuda on f32 activations: RMSNorm, NeoX RoPE, SiLU*mul, add, type
// conversion, softmax top-k routing and embedding gather (mixtile-cuda.h documents each).
#include <cfloat>

#include "common.cuh"
#include "router-topk.cuh"

namespace mixtile::cuda {

// One warp per row (n <= 1024 is typical for per-head norms and small hiddens) or one block per row.
template <class TO>
__global__ void rmsnorm_warp(const float* __restrict__ x, const float* __restrict__ w, TO* __restrict__ out,
                             int64_t rows, int n, float eps) {
  int64_t row = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const float* xr = x + row * n;
  float ss = 0.f;
  for (int i = lane; i < n; i += 32) ss += xr[i] * xr[i];
  ss = warp_sum(ss);
  float r = rsqrtf(ss / float(n) + eps);
  for (int i = lane; i < n; i += 32) out[row * n + i] = from_f32<TO>(xr[i] * r * w[i]);
}

template <class TO>
__global__ void rmsnorm_block(const float* __restrict__ x, const float* __restrict__ w, TO* __restrict__ out,
                              int64_t rows, int n, float eps) {
  __shared__ float part[32];
  int64_t row = blockIdx.x;
  const float* xr = x + row * n;
  float ss = 0.f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) ss += xr[i] * xr[i];
  ss = warp_sum(ss);
  if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < blockDim.x / 32 ? part[threadIdx.x] : 0.f;
    v = warp_sum(v);
    if (threadIdx.x == 0) part[0] = v;
  }
  __syncthreads();
  float r = rsqrtf(part[0] / float(n) + eps);
  for (int i = threadIdx.x; i < n; i += blockDim.x) out[row * n + i] = from_f32<TO>(xr[i] * r * w[i]);
}

template <class TO>
static void launch_rmsnorm(const float* x, const float* w, void* out, int64_t rows, int n, float eps, cudaStream_t st) {
  if (n <= 1024) {
    int64_t blocks = (rows + 3) / 4;
    rmsnorm_warp<TO><<<unsigned(blocks), 128, 0, st>>>(x, w, static_cast<TO*>(out), rows, n, eps);
  } else {
    rmsnorm_block<TO><<<unsigned(rows), 256, 0, st>>>(x, w, static_cast<TO*>(out), rows, n, eps);
  }
}

// Thread per (token, head, i < head_dim/2); angles as HF computes them: inv_freq in f32, pos * inv_freq in f32.
__global__ void rope_neox_kernel(float* __restrict__ x, const int32_t* __restrict__ pos, int64_t tokens, int heads,
                                 int head_dim, float log2_theta) {
  int half = head_dim / 2;
  int64_t total = tokens * heads * half;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    int i = int(idx % half);
    int64_t th = idx / half;  // token * heads + head
    int64_t t = th / heads;
    float inv_freq = 1.0f / exp2f(log2_theta * (float(2 * i) / float(head_dim)));
    float a = float(pos[t]) * inv_freq;
    float sn, cs;
    sincosf(a, &sn, &cs);
    float* p = x + th * head_dim;
    float x0 = p[i], x1 = p[i + half];
    p[i] = x0 * cs - x1 * sn;
    p[i + half] = x1 * cs + x0 * sn;
  }
}

template <class TO>
__global__ void silu_mul_kernel(const float* __restrict__ gate, const float* __restrict__ up, int64_t in_stride,
                                TO* __restrict__ out, int64_t rows, int n) {
  int64_t total = rows * n;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    int64_t r = idx / n;
    int i = int(idx % n);
    float g = gate[r * in_stride + i];
    float u = up[r * in_stride + i];
    out[idx] = from_f32<TO>(g / (1.0f + expf(-g)) * u);
  }
}

__global__ void add_kernel(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = a[i] + b[i];
}

template <class TI, class TO>
__global__ void convert_kernel(const TI* __restrict__ x, TO* __restrict__ y, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = from_f32<TO>(to_f32<TI>(x[i]));
}

// One warp per token (router-topk.cuh).
template <int PER>
__global__ void router_topk_kernel(const float* __restrict__ logits, int64_t tokens, int n, int k, int renorm,
                                   int32_t* __restrict__ ids, float* __restrict__ weights) {
  int64_t t = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (t >= tokens) return;
  router_topk_warp<PER>(logits + t * n, n, k, renorm, ids + t * k, weights + t * k);
}

// Block per token; threads over dim.
template <class T>
__global__ void embed_kernel(const T* __restrict__ table, int64_t n_rows, int dim, const int32_t* __restrict__ ids,
                             float* __restrict__ out) {
  int64_t t = blockIdx.x;
  int32_t id = ids[t];
  bool ok = id >= 0 && id < n_rows;
  for (int i = threadIdx.x; i < dim; i += blockDim.x)
    out[t * dim + i] = ok ? to_f32<T>(table[int64_t(id) * dim + i]) : 0.f;
}

__global__ void embed_q8_0_kernel(const uint8_t* __restrict__ table, int64_t n_rows, int dim,
                                  const int32_t* __restrict__ ids, float* __restrict__ out) {
  int64_t t = blockIdx.x;
  int32_t id = ids[t];
  bool ok = id >= 0 && id < n_rows;
  const uint8_t* row = table + int64_t(id) * (dim / 32) * 34;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    float v = 0.f;
    if (ok) {
      const uint8_t* blk = row + (i / 32) * 34;
      __half d = *reinterpret_cast<const __half*>(blk);
      v = __half2float(d) * float(int8_t(blk[2 + i % 32]));
    }
    out[t * dim + i] = v;
  }
}

}  // namespace mixtile::cuda

using namespace mixtile::cuda;

template <class TI>
static mxc_status convert_to(const TI* x, void* y, mxc_dtype yt, int64_t n, cudaStream_t st) {
  unsigned g = grid_1d(n, 256);
  switch (yt) {
    case MXC_F32: convert_kernel<TI, float><<<g, 256, 0, st>>>(x, (float*)y, n); break;
    case MXC_F16: convert_kernel<TI, __half><<<g, 256, 0, st>>>(x, (__half*)y, n); break;
    case MXC_BF16: convert_kernel<TI, __nv_bfloat16><<<g, 256, 0, st>>>(x, (__nv_bfloat16*)y, n); break;
    default: return fail(MXC_ERR_INVALID_ARG, "mxc_convert: output type %d is not F32, F16 or BF16", int(yt));
  }
  return check_launch("mxc_convert");
}

extern "C" {

mxc_status mxc_rmsnorm(const float* x, const float* w, void* out, mxc_dtype out_type, int64_t rows, int n, float eps,
                       mxc_stream* s) {
  MXC_CHECK_ARG(x && w && out, "mxc_rmsnorm: null pointer");
  MXC_CHECK_ARG(rows >= 0 && n > 0, "mxc_rmsnorm: bad shape rows=%lld n=%d", (long long)rows, n);
  MXC_CHECK_ARG(out_type == MXC_F32 || out_type == MXC_BF16, "mxc_rmsnorm: out_type must be F32 or BF16, got %d",
                int(out_type));
  if (rows == 0) return MXC_OK;
  if (out_type == MXC_F32)
    launch_rmsnorm<float>(x, w, out, rows, n, eps, stream_of(s));
  else
    launch_rmsnorm<__nv_bfloat16>(x, w, out, rows, n, eps, stream_of(s));
  return check_launch("mxc_rmsnorm");
}

mxc_status mxc_rope_neox(float* x, const int32_t* pos, int64_t tokens, int heads, int head_dim, float theta,
                         mxc_stream* s) {
  MXC_CHECK_ARG(x && pos, "mxc_rope_neox: null pointer");
  MXC_CHECK_ARG(tokens >= 0 && heads > 0 && head_dim > 0 && head_dim % 2 == 0 && head_dim <= 1024,
                "mxc_rope_neox: bad shape tokens=%lld heads=%d head_dim=%d (head_dim even, <= 1024)",
                (long long)tokens, heads, head_dim);
  MXC_CHECK_ARG(theta > 1.f, "mxc_rope_neox: theta must be > 1, got %g", double(theta));
  int64_t total = tokens * heads * (head_dim / 2);
  if (total == 0) return MXC_OK;
  rope_neox_kernel<<<grid_1d(total, 256), 256, 0, stream_of(s)>>>(x, pos, tokens, heads, head_dim, log2f(theta));
  return check_launch("mxc_rope_neox");
}

mxc_status mxc_silu_mul(const float* gate, const float* up, int64_t in_stride, void* out, mxc_dtype out_type,
                        int64_t rows, int n, mxc_stream* s) {
  MXC_CHECK_ARG(gate && up && out, "mxc_silu_mul: null pointer");
  MXC_CHECK_ARG(rows >= 0 && n > 0 && in_stride >= n, "mxc_silu_mul: bad shape rows=%lld n=%d in_stride=%lld",
                (long long)rows, n, (long long)in_stride);
  MXC_CHECK_ARG(out_type == MXC_F32 || out_type == MXC_BF16, "mxc_silu_mul: out_type must be F32 or BF16");
  int64_t total = rows * n;
  if (total == 0) return MXC_OK;
  if (out_type == MXC_F32)
    silu_mul_kernel<float><<<grid_1d(total, 256), 256, 0, stream_of(s)>>>(gate, up, in_stride, (float*)out, rows, n);
  else
    silu_mul_kernel<__nv_bfloat16>
        <<<grid_1d(total, 256), 256, 0, stream_of(s)>>>(gate, up, in_stride, (__nv_bfloat16*)out, rows, n);
  return check_launch("mxc_silu_mul");
}

mxc_status mxc_add(const float* a, const float* b, float* y, int64_t n, mxc_stream* s) {
  MXC_CHECK_ARG((a && b && y) || n == 0, "mxc_add: null pointer");
  MXC_CHECK_ARG(n >= 0, "mxc_add: negative n");
  if (n == 0) return MXC_OK;
  add_kernel<<<grid_1d(n, 256), 256, 0, stream_of(s)>>>(a, b, y, n);
  return check_launch("mxc_add");
}

mxc_status mxc_convert(const void* x, mxc_dtype xt, void* y, mxc_dtype yt, int64_t n, mxc_stream* s) {
  MXC_CHECK_ARG((x && y) || n == 0, "mxc_convert: null pointer");
  MXC_CHECK_ARG(n >= 0, "mxc_convert: negative n");
  if (n == 0) return MXC_OK;
  switch (xt) {
    case MXC_F32: return convert_to((const float*)x, y, yt, n, stream_of(s));
    case MXC_F16: return convert_to((const __half*)x, y, yt, n, stream_of(s));
    case MXC_BF16: return convert_to((const __nv_bfloat16*)x, y, yt, n, stream_of(s));
    default: return fail(MXC_ERR_INVALID_ARG, "mxc_convert: input type %d is not F32, F16 or BF16", int(xt));
  }
}

mxc_status mxc_router_topk(const float* logits, int64_t tokens, int n_experts, int k, int renormalize, int32_t* ids,
                           float* weights, mxc_stream* s) {
  MXC_CHECK_ARG(logits && ids && weights, "mxc_router_topk: null pointer");
  MXC_CHECK_ARG(n_experts > 0 && n_experts <= 1024, "mxc_router_topk: n_experts %d not in [1, 1024]", n_experts);
  MXC_CHECK_ARG(k > 0 && k <= 32 && k <= n_experts, "mxc_router_topk: k %d not in [1, min(32, n_experts)]", k);
  MXC_CHECK_ARG(tokens >= 0, "mxc_router_topk: negative tokens");
  if (tokens == 0) return MXC_OK;
  unsigned blocks = unsigned((tokens + 3) / 4);
  cudaStream_t st = stream_of(s);
  if (n_experts <= 128)
    router_topk_kernel<4><<<blocks, 128, 0, st>>>(logits, tokens, n_experts, k, renormalize, ids, weights);
  else if (n_experts <= 256)
    router_topk_kernel<8><<<blocks, 128, 0, st>>>(logits, tokens, n_experts, k, renormalize, ids, weights);
  else
    router_topk_kernel<32><<<blocks, 128, 0, st>>>(logits, tokens, n_experts, k, renormalize, ids, weights);
  return check_launch("mxc_router_topk");
}

mxc_status mxc_embed_gather(const void* table, mxc_dtype tt, int64_t n_rows, int dim, const int32_t* ids,
                            int64_t tokens, float* out, mxc_stream* s) {
  MXC_CHECK_ARG(table && ids && out, "mxc_embed_gather: null pointer");
  MXC_CHECK_ARG(n_rows > 0 && dim > 0 && tokens >= 0, "mxc_embed_gather: bad shape");
  if (tokens == 0) return MXC_OK;
  cudaStream_t st = stream_of(s);
  unsigned g = unsigned(tokens);
  MXC_CHECK_ARG(tokens < (1ll << 31), "mxc_embed_gather: too many tokens");
  switch (tt) {
    case MXC_F32: embed_kernel<float><<<g, 256, 0, st>>>((const float*)table, n_rows, dim, ids, out); break;
    case MXC_F16: embed_kernel<__half><<<g, 256, 0, st>>>((const __half*)table, n_rows, dim, ids, out); break;
    case MXC_BF16:
      embed_kernel<__nv_bfloat16><<<g, 256, 0, st>>>((const __nv_bfloat16*)table, n_rows, dim, ids, out);
      break;
    case MXC_Q8_0:
      MXC_CHECK_ARG(dim % 32 == 0, "mxc_embed_gather: Q8_0 rows need dim %% 32 == 0, got %d", dim);
      embed_q8_0_kernel<<<g, 256, 0, st>>>((const uint8_t*)table, n_rows, dim, ids, out);
      break;
    default: return fail(MXC_ERR_INVALID_ARG, "mxc_embed_gather: table type %d not F32, F16, BF16 or Q8_0", int(tt));
  }
  return check_launch("mxc_embed_gather");
}

}  // extern "C"
