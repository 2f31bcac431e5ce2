// A decoder layer's FFN half, in one call: x += ffn(rms_norm(x)), where ffn is the routed
// experts (Qwen3-MoE: router softmax, top-k, SwiGLU experts, weighted sum) or a dense SwiGLU
// MLP (Qwen3 dense). Also the final norm + lm_head for the rows whose logits are wanted.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cpu/experts/experts.h"
#include "cpu/linear/linear.h"
#include "tensor.h"

namespace mixtile {

struct FfnBlock {
  int layer = 0;
  int64_t hidden = 0;
  float eps = 1e-6f;
  std::vector<float> norm;  // post_attention_layernorm [hidden]
  // MoE (experts set): top_k experts of n_expert, weights renormalised when norm_topk_prob.
  std::shared_ptr<ExpertsWeights> experts;
  int top_k = 0;
  bool norm_topk_prob = true;
  // Dense (experts null): gate, up [ffn, hidden]; down [hidden, ffn].
  std::shared_ptr<LinearWeight> gate, up, down;
};

// Throw std::invalid_argument naming the weight whose shape does not fit.
std::shared_ptr<FfnBlock> ffn_block_create_moe(int layer, float eps, const Weight& norm, const Weight& router,
                                               const Weight& gate_exps, const Weight& up_exps,
                                               const Weight& down_exps, int top_k, bool norm_topk_prob,
                                               const std::string& backend = "auto");
std::shared_ptr<FfnBlock> ffn_block_create_dense(int layer, float eps, const Weight& norm, const Weight& gate,
                                                 const Weight& up, const Weight& down);

// x: [n, hidden] residual stream, updated in place.
void ffn_block_forward(const FfnBlock& b, float* x, int64_t n);

struct LmHead {
  int64_t hidden = 0, vocab = 0;
  float eps = 1e-6f;
  std::vector<float> norm;             // model.norm [hidden]
  std::shared_ptr<LinearWeight> out;   // lm_head [vocab, hidden] (token_embd when tied)
};
// backend: lm_head's linear backend (linear_load: auto | AMXBF16 | AMXInt8 | AVX512).
std::shared_ptr<LmHead> lm_head_create(float eps, const Weight& norm, const Weight& out,
                                       const std::string& backend = "auto");
// x: [n, hidden]; rows: [n_rows] indexes into x; logits: [n_rows, vocab].
void lm_head_forward(const LmHead& h, const float* x, const int32_t* rows, int64_t n_rows, float* logits);

}  // namespace mixtile
