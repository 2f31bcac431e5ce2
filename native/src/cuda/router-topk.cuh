// Softmax top-k routing of one token by one warp, shared by mxc_router_topk (elementwise.cu) and the fused
// decode route mxc_moe_route (moe.cu), so both pick the same experts with the same weights bit for bit.
#pragma once
#include <cfloat>

#include "common.cuh"

namespace mixtile::cuda {

// Lane holds experts lane, lane+32, ... (PER of them, PER * 32 >= n). Top-k by k rounds of a warp argmax;
// lane r < k writes rank r's id and weight (renormalised over the k when renorm). The logits are read with
// __ldcg (L2, not L1): the fused route reads logits that other blocks of its grid wrote.
template <int PER>
__device__ __forceinline__ void router_topk_warp(const float* l, int n, int k, int renorm, int32_t* ids,
                                                 float* weights) {
  const int lane = threadIdx.x % 32;
  float v[PER];
  float mx = -FLT_MAX;
#pragma unroll
  for (int j = 0; j < PER; ++j) {
    int e = lane + 32 * j;
    v[j] = e < n ? __ldcg(l + e) : -INFINITY;
    mx = fmaxf(mx, v[j]);
  }
  mx = warp_max(mx);
  float sum = 0.f;
#pragma unroll
  for (int j = 0; j < PER; ++j) {
    v[j] = (lane + 32 * j) < n ? expf(v[j] - mx) : -1.f;  // probabilities; -1 marks "no expert"
    sum += v[j] > 0.f ? v[j] : 0.f;
  }
  sum = warp_sum(sum);
  float sel_sum = 0.f;
  float my_w = 0.f;  // lane r keeps the weight of rank r (k <= 32)
  int my_id = 0;
  for (int r = 0; r < k; ++r) {
    float best = -2.f;
    int bid = 0x7fffffff;
#pragma unroll
    for (int j = 0; j < PER; ++j) {
      if (v[j] > best) {  // strict: within a lane, the lower index wins ties
        best = v[j];
        bid = lane + 32 * j;
      }
    }
    for (int o = 16; o > 0; o >>= 1) {
      float ob = __shfl_xor_sync(0xffffffffu, best, o);
      int oi = __shfl_xor_sync(0xffffffffu, bid, o);
      if (ob > best || (ob == best && oi < bid)) {
        best = ob;
        bid = oi;
      }
    }
#pragma unroll
    for (int j = 0; j < PER; ++j)
      if (lane + 32 * j == bid) v[j] = -2.f;
    float p = best / sum;
    sel_sum += p;
    if (lane == r) {
      my_w = p;
      my_id = bid;
    }
  }
  if (lane < k) {
    ids[lane] = my_id;
    weights[lane] = renorm ? my_w / sel_sum : my_w;
  }
}

}  // namespace mixtile::cuda
