// The attention half of a decoder layer; see attention-block.h. Projections go through
// linear_forward (any weight type), the attention core through the dispatch table.
#include "cpu/attention/attention-block.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "cpu/attention/attention.h"
#include "cpu/call-scratch.h"
#include "cpu/linear/linear-cost.h"
#include "cpu/dequant/dequant.h"
#include "cpu/norm/norm.h"
#include "cpu/norm/residual.h"
#include "cpu/profile/op-profile.h"
#include "cpu/rope/rope.h"
#include "threadpool.h"

namespace mixtile {

std::vector<float> norm_weight_floats(const Weight& w, int64_t n, const char* what) {
  if (w.ne[0] != n || w.rows() != 1) {
    throw std::invalid_argument(std::string(what) + ": expected a vector of " + std::to_string(n) +
                                " elements, got shape [" + std::to_string(w.ne[0]) + ", " +
                                std::to_string(w.rows()) + "]");
  }
  std::vector<float> out(static_cast<size_t>(n));
  dequantize_row(w.type, w.data, out.data(), n);
  return out;
}

// A decode token's RoPE table is the same in every layer (one theta): 64 cos/sin pairs in double
// per layer were ~2-4 us of each layer's serial part. Kept per thread for the last position and
// frequencies; the same numbers as rope_table.
static void decode_rope_table(int32_t pos, const std::vector<double>& inv_freq, int d, const float** cs,
                              const float** sn) {
  thread_local int32_t t_pos = -1;
  thread_local std::vector<double> t_freq;
  thread_local std::vector<float> t_cs, t_sn;
  if (pos != t_pos || t_freq != inv_freq) {
    rope_table(1, d, &pos, inv_freq.data(), t_cs, t_sn);
    t_pos = pos;
    t_freq = inv_freq;
  }
  *cs = t_cs.data();
  *sn = t_sn.data();
}

static std::shared_ptr<LinearWeight> projection(const Weight& w, int64_t k, int64_t m, const char* what,
                                               const std::string& backend) {
  if (w.ne[0] != k || w.ne[1] != m || w.ne[2] != 1) {
    throw std::invalid_argument(std::string(what) + ": expected shape {" + std::to_string(k) + ", " +
                                std::to_string(m) + "} (ggml order), got {" + std::to_string(w.ne[0]) + ", " +
                                std::to_string(w.ne[1]) + ", " + std::to_string(w.ne[2]) + "}");
  }
  return linear_load(w, backend);
}

std::shared_ptr<AttentionLayer> attention_layer_create(int layer, int n_heads, int n_kv_heads, int head_dim, float eps,
                                                       double rope_theta, const Weight& norm, const Weight* q_norm,
                                                       const Weight* k_norm, const Weight& wq, const Weight& wk,
                                                       const Weight& wv, const Weight& wo, const std::string& backend) {
  if (n_heads <= 0 || n_kv_heads <= 0 || n_heads % n_kv_heads != 0 || head_dim <= 0 || head_dim % 2 != 0) {
    throw std::invalid_argument("attention layer " + std::to_string(layer) + ": bad head counts (heads " +
                                std::to_string(n_heads) + ", kv heads " + std::to_string(n_kv_heads) +
                                ", head dim " + std::to_string(head_dim) + ")");
  }
  auto L = std::make_shared<AttentionLayer>();
  L->layer = layer;
  L->hidden = norm.ne[0];
  L->n_heads = n_heads;
  L->n_kv_heads = n_kv_heads;
  L->head_dim = head_dim;
  L->eps = eps;
  const int64_t q_dim = int64_t(n_heads) * head_dim, kv_dim = int64_t(n_kv_heads) * head_dim;
  L->norm = norm_weight_floats(norm, L->hidden, "input_layernorm");
  if (q_norm) L->q_norm = norm_weight_floats(*q_norm, head_dim, "self_attn.q_norm");
  if (k_norm) L->k_norm = norm_weight_floats(*k_norm, head_dim, "self_attn.k_norm");
  L->wq = projection(wq, L->hidden, q_dim, "self_attn.q_proj", backend);
  L->wk = projection(wk, L->hidden, kv_dim, "self_attn.k_proj", backend);
  L->wv = projection(wv, L->hidden, kv_dim, "self_attn.v_proj", backend);
  L->wo = projection(wo, q_dim, L->hidden, "self_attn.o_proj", backend);
  L->inv_freq = rope_inv_freq(head_dim, rope_theta);
  return L;
}

void attention_block_forward(const AttentionLayer& L, KvCache& kv, float* x, int64_t n, const int32_t* pos,
                             const int32_t* seq) {
  const int64_t hidden = L.hidden, d = L.head_dim;
  const int64_t q_dim = L.n_heads * d, kv_dim = L.n_kv_heads * d;
  // One scratch region per call, reused across calls: h [n, hidden], q/att [n, q_dim], k/v [n, kv_dim], o [n, hidden].
  thread_local CallScratch scratch;
  float* h = scratch.floats(static_cast<size_t>(n * (hidden * 2 + q_dim * 2 + kv_dim * 2)));
  float* q = h + n * hidden;
  float* att = q + n * q_dim;
  float* k = att + n * q_dim;
  float* v = k + n * kv_dim;
  float* o = v + n * kv_dim;

  OpTimer t_qkv(Op::attn_qkv);
  rms_norm(x, L.norm.data(), h, n, hidden, L.eps);
  {
    // One pool job for the three projections (each alone is a barrier; k and v are small).
    const LinearWeight* ws[3] = {L.wq.get(), L.wk.get(), L.wv.get()};
    float* ys[3] = {q, k, v};
    linear_forward_multi(ws, 3, h, n, ys);
  }
  t_qkv.set(linear_bytes(*L.wq) + linear_bytes(*L.wk) + linear_bytes(*L.wv),
            linear_flops(*L.wq, n) + linear_flops(*L.wk, n) + linear_flops(*L.wv, n));
  t_qkv.stop();
  OpTimer t_core(Op::attn_core);
  OpTimer t_rope(Op::attn_rope_kv);
  // q/k norm, RoPE and the cache write are per token: chunks of tokens on the pool (serial, they
  // were ~4 ms of a 512-token layer, a large part of the core once the core is fast at 16 threads).
  constexpr int64_t ROPE_CHUNK = 16;
  parallel_for((n + ROPE_CHUNK - 1) / ROPE_CHUNK, [&](int64_t c, int) {
    const int64_t i0 = c * ROPE_CHUNK, m = std::min(ROPE_CHUNK, n - i0);
    float* qc = q + i0 * q_dim;
    float* kc = k + i0 * kv_dim;
    if (!L.q_norm.empty()) rms_norm(qc, L.q_norm.data(), qc, m * L.n_heads, d, L.eps);
    if (!L.k_norm.empty()) rms_norm(kc, L.k_norm.data(), kc, m * L.n_kv_heads, d, L.eps);
    std::vector<float> cs, sn;
    const float *c_tab, *s_tab;
    if (m == 1) {
      decode_rope_table(pos[i0], L.inv_freq, int(d), &c_tab, &s_tab);
    } else {
      rope_table(m, int(d), pos + i0, L.inv_freq.data(), cs, sn);
      c_tab = cs.data();
      s_tab = sn.data();
    }
    rope_neox(qc, m, L.n_heads, int(d), c_tab, s_tab);
    rope_neox(kc, m, L.n_kv_heads, int(d), c_tab, s_tab);
    kv_cache_write(kv, L.layer, m, seq + i0, pos + i0, kc, v + i0 * kv_dim);
  });

  t_rope.stop();
  OpTimer t_attend(Op::attn_attend);
  AttentionArgs a = attention_args_for(kv, L.layer);
  a.q = q;
  a.out = att;
  a.pos = pos;
  a.seq = seq;
  a.n = n;
  a.n_heads = L.n_heads;
  a.scale = float(1.0 / std::sqrt(double(d)));
  attention_select(a).fn(a);
  t_attend.stop();
  t_core.stop();

  OpTimer t_o(Op::attn_o);
  linear_forward(*L.wo, att, n, o);
  residual_add(x, o, n, hidden);
  t_o.set(linear_bytes(*L.wo), linear_flops(*L.wo, n));
}

}  // namespace mixtile
