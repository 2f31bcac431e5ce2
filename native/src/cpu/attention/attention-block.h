// One decoder layer's attention half, in one call: x += o_proj(attention(rope(norm_qk(qkv(rms_norm(x)))))).
// The KV of this batch's tokens is written to the cache before attention reads it.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cpu/linear/linear.h"
#include "kv-cache.h"
#include "tensor.h"

namespace mixtile {

struct AttentionLayer {
  int layer = 0;
  int64_t hidden = 0;
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
  float eps = 1e-6f;
  std::vector<float> norm;            // input_layernorm [hidden]
  std::vector<float> q_norm, k_norm;  // [head_dim] each; empty = no q/k norm (llama)
  std::shared_ptr<LinearWeight> wq;   // [n_heads * head_dim, hidden]
  std::shared_ptr<LinearWeight> wk;   // [n_kv_heads * head_dim, hidden]
  std::shared_ptr<LinearWeight> wv;   // [n_kv_heads * head_dim, hidden]
  std::shared_ptr<LinearWeight> wo;   // [hidden, n_heads * head_dim]
  std::vector<double> inv_freq;       // RoPE [head_dim / 2]
};

// A norm weight (any type dequantize_row reads) as floats; throws if it does not hold `n` elements.
std::vector<float> norm_weight_floats(const Weight& w, int64_t n, const char* what);

// Checks every shape against the head counts; throws std::invalid_argument naming the weight.
// backend: the projections' linear backend (linear_load: auto | AMXBF16 | AMXInt8 | AVX512).
std::shared_ptr<AttentionLayer> attention_layer_create(int layer, int n_heads, int n_kv_heads, int head_dim, float eps,
                                                       double rope_theta, const Weight& norm, const Weight* q_norm,
                                                       const Weight* k_norm, const Weight& wq, const Weight& wk,
                                                       const Weight& wv, const Weight& wo,
                                                       const std::string& backend = "auto");

// x: [n, hidden] residual stream, updated in place. pos, seq: [n]; checked by the caller
// (seq < kv.n_seq, pos < kv.ctx, cache positions below pos already written).
void attention_block_forward(const AttentionLayer& L, KvCache& kv, float* x, int64_t n, const int32_t* pos,
                             const int32_t* seq);

}  // namespace mixtile
