// Small operators of libmixtile-cuda-host on f32 activations: RMSNorm, NeoX RoPE, SiLU*mul, add, type
// conversion, softmax top-k routing and embedding gather (mixtile-cuda.h documents each). Arguments
// are checked as the real library checks them; results are rounded to the output type as the GPU
// stores them. Reductions accumulate in double (the GPU's f32 tree sums are at least as close to it).
#include <cmath>
#include <vector>

#include "host-common.h"

using namespace mixtile::cuda_host;

namespace {

template <class TO>
void rmsnorm_rows(const float* x, const float* w, TO* out, int64_t rows, int n, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    double ss = 0;
    for (int i = 0; i < n; ++i) ss += double(xr[i]) * xr[i];
    const float inv = float(1.0 / std::sqrt(ss / n + double(eps)));
    for (int i = 0; i < n; ++i) out[r * n + i] = from_f32<TO>(xr[i] * inv * w[i]);  // out may be x: read first
  }
}

template <class TO>
void silu_mul_rows(const float* gate, const float* up, int64_t in_stride, TO* out, int64_t rows, int n) {
  for (int64_t r = 0; r < rows; ++r)
    for (int i = 0; i < n; ++i) {
      const float g = gate[r * in_stride + i], u = up[r * in_stride + i];
      out[r * n + i] = from_f32<TO>(g / (1.0f + std::exp(-g)) * u);
    }
}

template <class TI, class TO>
void convert_n(const TI* x, TO* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = from_f32<TO>(to_f32(x[i]));
}

template <class TI>
void convert_from(const TI* x, void* y, mxc_dtype yt, int64_t n) {
  if (yt == MXC_F32) convert_n(x, static_cast<float*>(y), n);
  else if (yt == MXC_F16) convert_n(x, static_cast<F16*>(y), n);
  else convert_n(x, static_cast<BF16*>(y), n);
}

size_t elem_bytes(mxc_dtype t) { return t == MXC_F32 ? 4 : 2; }

// As the GPU kernel: softmax probabilities in f32, k rounds of "largest remaining, lower id on ties".
void router_token(const float* l, int n, int k, int renorm, int32_t* ids, float* weights) {
  std::vector<float> p(n);
  float mx = -INFINITY;
  for (int e = 0; e < n; ++e) mx = std::fmax(mx, l[e]);
  double sum = 0;
  for (int e = 0; e < n; ++e) sum += (p[e] = std::exp(l[e] - mx));
  const float fsum = float(sum);
  float sel_sum = 0.f;
  for (int r = 0; r < k; ++r) {
    int best = 0;
    for (int e = 1; e < n; ++e)
      if (p[e] > p[best]) best = e;  // strict: the lower id wins ties
    const float q = p[best] / fsum;
    p[best] = -2.f;  // taken
    ids[r] = best;
    weights[r] = q;
    sel_sum += q;
  }
  if (renorm)
    for (int r = 0; r < k; ++r) weights[r] /= sel_sum;
}

template <class T>
void embed_rows(const T* table, int64_t n_rows, int dim, const int32_t* ids, int64_t tokens, float* out) {
  for (int64_t t = 0; t < tokens; ++t) {
    const int32_t id = ids[t];
    const bool ok = id >= 0 && id < n_rows;
    for (int i = 0; i < dim; ++i) out[t * dim + i] = ok ? to_f32(table[int64_t(id) * dim + i]) : 0.f;
  }
}

void embed_q8_0_rows(const uint8_t* table, int64_t n_rows, int dim, const int32_t* ids, int64_t tokens, float* out) {
  for (int64_t t = 0; t < tokens; ++t) {
    const int32_t id = ids[t];
    const bool ok = id >= 0 && id < n_rows;
    for (int i = 0; i < dim; ++i) {
      float v = 0.f;
      if (ok) {
        const uint8_t* blk = table + int64_t(id) * (dim / 32) * 34 + (i / 32) * 34;
        v = f16_to_f32(uint16_t(blk[0] | blk[1] << 8)) * float(int8_t(blk[2 + i % 32]));
      }
      out[t * dim + i] = v;
    }
  }
}

}  // namespace

extern "C" {

mxc_status mxc_rmsnorm(const float* x, const float* w, void* out, mxc_dtype out_type, int64_t rows, int n, float eps,
                       mxc_stream* s) {
  MXH_CHECK_ARG(x && w && out, "mxc_rmsnorm: null pointer");
  MXH_CHECK_ARG(rows >= 0 && n > 0, "mxc_rmsnorm: bad shape rows=%lld n=%d", (long long)rows, n);
  MXH_CHECK_ARG(out_type == MXC_F32 || out_type == MXC_BF16, "mxc_rmsnorm: out_type must be F32 or BF16, got %d",
                int(out_type));
  if (rows == 0) return MXC_OK;
  MXH_DEV(x, size_t(rows) * n * 4, "mxc_rmsnorm");
  MXH_DEV(w, size_t(n) * 4, "mxc_rmsnorm");
  MXH_DEV(out, size_t(rows) * n * elem_bytes(out_type), "mxc_rmsnorm");
  if (out_type == MXC_F32) return submit(s, [=] { rmsnorm_rows(x, w, static_cast<float*>(out), rows, n, eps); });
  return submit(s, [=] { rmsnorm_rows(x, w, static_cast<BF16*>(out), rows, n, eps); });
}

mxc_status mxc_rope_neox(float* x, const int32_t* pos, int64_t tokens, int heads, int head_dim, float theta,
                         mxc_stream* s) {
  MXH_CHECK_ARG(x && pos, "mxc_rope_neox: null pointer");
  MXH_CHECK_ARG(tokens >= 0 && heads > 0 && head_dim > 0 && head_dim % 2 == 0 && head_dim <= 1024,
                "mxc_rope_neox: bad shape tokens=%lld heads=%d head_dim=%d (head_dim even, <= 1024)",
                (long long)tokens, heads, head_dim);
  MXH_CHECK_ARG(theta > 1.f, "mxc_rope_neox: theta must be > 1, got %g", double(theta));
  if (tokens == 0) return MXC_OK;
  MXH_DEV(x, size_t(tokens) * heads * head_dim * 4, "mxc_rope_neox");
  MXH_DEV(pos, size_t(tokens) * 4, "mxc_rope_neox");
  return submit(s, [=] {
    const int half = head_dim / 2;
    std::vector<float> inv_freq(half);  // as HF: theta^(-2i/d) rounded to f32, then pos * inv_freq in f32
    for (int i = 0; i < half; ++i) inv_freq[i] = float(1.0 / std::pow(double(theta), double(2 * i) / head_dim));
    for (int64_t t = 0; t < tokens; ++t)
      for (int i = 0; i < half; ++i) {
        const float a = float(pos[t]) * inv_freq[i];
        const float sn = std::sin(a), cs = std::cos(a);
        for (int h = 0; h < heads; ++h) {
          float* p = x + (t * heads + h) * head_dim;
          const float x0 = p[i], x1 = p[i + half];
          p[i] = x0 * cs - x1 * sn;
          p[i + half] = x1 * cs + x0 * sn;
        }
      }
  });
}

mxc_status mxc_silu_mul(const float* gate, const float* up, int64_t in_stride, void* out, mxc_dtype out_type,
                        int64_t rows, int n, mxc_stream* s) {
  MXH_CHECK_ARG(gate && up && out, "mxc_silu_mul: null pointer");
  MXH_CHECK_ARG(rows >= 0 && n > 0 && in_stride >= n, "mxc_silu_mul: bad shape rows=%lld n=%d in_stride=%lld",
                (long long)rows, n, (long long)in_stride);
  MXH_CHECK_ARG(out_type == MXC_F32 || out_type == MXC_BF16, "mxc_silu_mul: out_type must be F32 or BF16");
  if (rows == 0) return MXC_OK;
  MXH_DEV(gate, (size_t(rows - 1) * in_stride + n) * 4, "mxc_silu_mul");
  MXH_DEV(up, (size_t(rows - 1) * in_stride + n) * 4, "mxc_silu_mul");
  MXH_DEV(out, size_t(rows) * n * elem_bytes(out_type), "mxc_silu_mul");
  if (out_type == MXC_F32)
    return submit(s, [=] { silu_mul_rows(gate, up, in_stride, static_cast<float*>(out), rows, n); });
  return submit(s, [=] { silu_mul_rows(gate, up, in_stride, static_cast<BF16*>(out), rows, n); });
}

mxc_status mxc_add(const float* a, const float* b, float* y, int64_t n, mxc_stream* s) {
  MXH_CHECK_ARG((a && b && y) || n == 0, "mxc_add: null pointer");
  MXH_CHECK_ARG(n >= 0, "mxc_add: negative n");
  if (n == 0) return MXC_OK;
  MXH_DEV(a, size_t(n) * 4, "mxc_add");
  MXH_DEV(b, size_t(n) * 4, "mxc_add");
  MXH_DEV(y, size_t(n) * 4, "mxc_add");
  return submit(s, [=] {
    for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
  });
}

mxc_status mxc_convert(const void* x, mxc_dtype xt, void* y, mxc_dtype yt, int64_t n, mxc_stream* s) {
  MXH_CHECK_ARG((x && y) || n == 0, "mxc_convert: null pointer");
  MXH_CHECK_ARG(n >= 0, "mxc_convert: negative n");
  if (n == 0) return MXC_OK;
  MXH_CHECK_ARG(xt == MXC_F32 || xt == MXC_F16 || xt == MXC_BF16, "mxc_convert: input type %d is not F32, F16 or BF16",
                int(xt));
  MXH_CHECK_ARG(yt == MXC_F32 || yt == MXC_F16 || yt == MXC_BF16,
                "mxc_convert: output type %d is not F32, F16 or BF16", int(yt));
  MXH_DEV(x, size_t(n) * elem_bytes(xt), "mxc_convert");
  MXH_DEV(y, size_t(n) * elem_bytes(yt), "mxc_convert");
  return submit(s, [=] {
    if (xt == MXC_F32) convert_from(static_cast<const float*>(x), y, yt, n);
    else if (xt == MXC_F16) convert_from(static_cast<const F16*>(x), y, yt, n);
    else convert_from(static_cast<const BF16*>(x), y, yt, n);
  });
}

mxc_status mxc_router_topk(const float* logits, int64_t tokens, int n_experts, int k, int renormalize, int32_t* ids,
                           float* weights, mxc_stream* s) {
  MXH_CHECK_ARG(logits && ids && weights, "mxc_router_topk: null pointer");
  MXH_CHECK_ARG(n_experts > 0 && n_experts <= 1024, "mxc_router_topk: n_experts %d not in [1, 1024]", n_experts);
  MXH_CHECK_ARG(k > 0 && k <= 32 && k <= n_experts, "mxc_router_topk: k %d not in [1, min(32, n_experts)]", k);
  MXH_CHECK_ARG(tokens >= 0, "mxc_router_topk: negative tokens");
  if (tokens == 0) return MXC_OK;
  MXH_DEV(logits, size_t(tokens) * n_experts * 4, "mxc_router_topk");
  MXH_DEV(ids, size_t(tokens) * k * 4, "mxc_router_topk");
  MXH_DEV(weights, size_t(tokens) * k * 4, "mxc_router_topk");
  return submit(s, [=] {
    for (int64_t t = 0; t < tokens; ++t)
      router_token(logits + t * n_experts, n_experts, k, renormalize, ids + t * k, weights + t * k);
  });
}

mxc_status mxc_embed_gather(const void* table, mxc_dtype tt, int64_t n_rows, int dim, const int32_t* ids,
                            int64_t tokens, float* out, mxc_stream* s) {
  MXH_CHECK_ARG(table && ids && out, "mxc_embed_gather: null pointer");
  MXH_CHECK_ARG(n_rows > 0 && dim > 0 && tokens >= 0, "mxc_embed_gather: bad shape");
  if (tokens == 0) return MXC_OK;
  MXH_CHECK_ARG(tokens < (1ll << 31), "mxc_embed_gather: too many tokens");
  MXH_CHECK_ARG(tt == MXC_F32 || tt == MXC_F16 || tt == MXC_BF16 || tt == MXC_Q8_0,
                "mxc_embed_gather: table type %d not F32, F16, BF16 or Q8_0", int(tt));
  MXH_CHECK_ARG(tt != MXC_Q8_0 || dim % 32 == 0, "mxc_embed_gather: Q8_0 rows need dim %% 32 == 0, got %d", dim);
  const size_t row_bytes = tt == MXC_Q8_0 ? size_t(dim / 32) * 34 : size_t(dim) * elem_bytes(tt);
  MXH_DEV(table, size_t(n_rows) * row_bytes, "mxc_embed_gather");
  MXH_DEV(ids, size_t(tokens) * 4, "mxc_embed_gather");
  MXH_DEV(out, size_t(tokens) * dim * 4, "mxc_embed_gather");
  return submit(s, [=] {
    switch (tt) {
      case MXC_F32: embed_rows(static_cast<const float*>(table), n_rows, dim, ids, tokens, out); break;
      case MXC_F16: embed_rows(static_cast<const F16*>(table), n_rows, dim, ids, tokens, out); break;
      case MXC_BF16: embed_rows(static_cast<const BF16*>(table), n_rows, dim, ids, tokens, out); break;
      default: embed_q8_0_rows(static_cast<const uint8_t*>(table), n_rows, dim, ids, tokens, out); break;
    }
  });
}

}  // extern "C"
