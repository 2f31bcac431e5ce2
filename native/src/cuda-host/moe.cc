// MoE operators of libmixtile-cuda-host. The decode route (mxc_moe_route) is the composition it stands for,
// mxc_rmsnorm + mxc_gemm_f32 + mxc_router_topk on the stream (the real kernel gives the same bits as those);
// mxc_add_when_ready adds once the host's flag is set.
// Routed experts (the kernels around the per-expert GEMMs, mixtile-cuda.h "routed experts"): gather token
// rows to BF16 grouped by expert, and combine the experts' outputs back into token order, summing each
// token's slots in slot order as the GPU does (deterministic).
#include "host-common.h"

using namespace mixtile::cuda_host;

extern "C" {

mxc_status mxc_moe_route(const float* x, const float* norm_w, float eps, const float* router, int64_t n, int hidden,
                         int n_experts, int k, int renormalize, float* xn, float* logits, int32_t* ids, float* weights,
                         uint32_t* counter, mxc_stream* s) {
  MXH_CHECK_ARG(x && norm_w && router && xn && logits && ids && weights && counter, "mxc_moe_route: null pointer");
  MXH_CHECK_ARG(hidden > 0 && hidden <= 8192, "mxc_moe_route: hidden %d not in [1, 8192]", hidden);
  MXH_CHECK_ARG(n_experts > 0 && n_experts <= 1024, "mxc_moe_route: n_experts %d not in [1, 1024]", n_experts);
  MXH_CHECK_ARG(k > 0 && k <= 32 && k <= n_experts, "mxc_moe_route: k %d not in [1, min(32, n_experts)]", k);
  MXH_CHECK_ARG(n >= 0 && n <= 65535, "mxc_moe_route: tokens %lld not in [0, 65535]", (long long)n);
  if (n == 0) return MXC_OK;
  MXH_DEV(counter, 4, "mxc_moe_route");
  MXH_TRY(mxc_rmsnorm(x, norm_w, xn, MXC_F32, n, hidden, eps, s));
  MXH_TRY(mxc_gemm_f32(n, n_experts, hidden, xn, router, logits, s));
  return mxc_router_topk(logits, n, n_experts, k, renormalize, ids, weights, s);
}

// The stand-in runs queued work only where the host synchronises, so the flag must already be set when this
// runs: a host that synchronised with the stream before releasing the sum (a deadlock on a GPU) gets flag 2.
mxc_status mxc_add_when_ready(float* x, const float* sum, int64_t n, uint32_t* flag, mxc_stream* s) {
  MXH_CHECK_ARG(x && sum && flag, "mxc_add_when_ready: null pointer");
  MXH_CHECK_ARG(n >= 0, "mxc_add_when_ready: negative length");
  MXH_DEV(x, size_t(n) * 4, "mxc_add_when_ready");
  MXH_DEV(sum, size_t(n) * 4, "mxc_add_when_ready");
  MXH_DEV(flag, 4, "mxc_add_when_ready");
  return submit(s, [=] {
    auto* f = reinterpret_cast<volatile uint32_t*>(flag);
    if (*f != 1u) {
      *f = 2u;
      return;
    }
    for (int64_t i = 0; i < n; ++i) x[i] += sum[i];
    *f = 0u;
  });
}

mxc_status mxc_gather_rows_bf16(const float* x, int64_t n_x, int64_t hidden, const int32_t* rows, int64_t n_rows,
                                uint16_t* out, mxc_stream* s) {
  MXH_CHECK_ARG(n_x >= 0 && hidden > 0 && n_rows >= 0 && hidden < (1ll << 31),
                "mxc_gather_rows_bf16: bad shape n_x=%lld hidden=%lld n_rows=%lld", (long long)n_x, (long long)hidden,
                (long long)n_rows);
  if (n_rows == 0) return MXC_OK;
  MXH_CHECK_ARG(x && rows && out, "mxc_gather_rows_bf16: null pointer");
  MXH_DEV(x, size_t(n_x * hidden) * 4, "mxc_gather_rows_bf16");
  MXH_DEV(rows, size_t(n_rows) * 4, "mxc_gather_rows_bf16");
  MXH_DEV(out, size_t(n_rows * hidden) * 2, "mxc_gather_rows_bf16");
  return submit(s, [=] {
    for (int64_t r = 0; r < n_rows; ++r) {
      const int32_t src = rows[r];
      const bool ok = src >= 0 && src < n_x;
      for (int64_t c = 0; c < hidden; ++c) out[r * hidden + c] = f32_to_bf16(ok ? x[src * hidden + c] : 0.f);
    }
  });
}

mxc_status mxc_moe_combine(const float* o, int64_t n_o, int64_t hidden, const int32_t* pos, const float* w, int64_t n,
                           int top_k, float* y, int accumulate, mxc_stream* s) {
  MXH_CHECK_ARG(n_o >= 0 && hidden > 0 && n >= 0 && top_k >= 1 && top_k <= 64,
                "mxc_moe_combine: bad shape n_o=%lld hidden=%lld n=%lld top_k=%d", (long long)n_o, (long long)hidden,
                (long long)n, top_k);
  if (n == 0) return MXC_OK;
  MXH_CHECK_ARG(pos && w && y && (o || n_o == 0), "mxc_moe_combine: null pointer");
  MXH_DEV(o, size_t(n_o * hidden) * 4, "mxc_moe_combine");
  MXH_DEV(pos, size_t(n * top_k) * 4, "mxc_moe_combine");
  MXH_DEV(w, size_t(n * top_k) * 4, "mxc_moe_combine");
  MXH_DEV(y, size_t(n * hidden) * 4, "mxc_moe_combine");
  return submit(s, [=] {
    for (int64_t t = 0; t < n; ++t)
      for (int64_t c = 0; c < hidden; ++c) {
        float acc = accumulate ? y[t * hidden + c] : 0.f;
        for (int j = 0; j < top_k; ++j) {
          const int32_t p = pos[t * top_k + j];
          if (p >= 0 && p < n_o) acc += w[t * top_k + j] * o[int64_t(p) * hidden + c];
        }
        y[t * hidden + c] = acc;
      }
  });
}

}  // extern "C"
