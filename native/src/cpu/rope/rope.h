// Rotary position embedding, NeoX / "rotate half" layout (Qwen3, HF apply_rotary_pos_emb): in a
// head vector of head_dim d, element i pairs with i + d/2 and rotates by pos * theta^(-2i/d).
#pragma once
#include <cstdint>
#include <vector>

namespace mixtile {

// inv_freq[i] = theta^(-2i/head_dim), i < head_dim/2 (computed once per layer).
std::vector<double> rope_inv_freq(int head_dim, double theta);

// cos/sin of every (token, pair): cs, sn [n, head_dim / 2]; shared by q and k of one call.
void rope_table(int64_t n, int head_dim, const int32_t* pos, const double* inv_freq, std::vector<float>& cs,
                std::vector<float>& sn);

// x: [n, n_heads, head_dim] F32, rotated in place with a table from rope_table.
void rope_neox(float* x, int64_t n, int n_heads, int head_dim, const float* cs, const float* sn);

}  // namespace mixtile
