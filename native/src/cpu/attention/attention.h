// Causal GQA attention of a batch of tokens (from several sequences) over their KV slots:
// token i of sequence seq[i] at position pos[i] attends to cache positions [0, pos[i]] of that
// slot, which the caller has already written (this batch's K/V included). Softmax is online
// (running max and sum), so no [T, T] score matrix exists at any context length.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "cpu/isa.h"
#include "kv-cache.h"

namespace mixtile {

struct AttentionArgs {
  const float* q;        // [n, n_heads, head_dim] F32, normed and roped
  float* out;            // [n, n_heads, head_dim] F32, overwritten
  const int32_t* pos;    // [n] position of each token (< ctx)
  const int32_t* seq;    // [n] KV slot of each token
  int64_t n = 0;
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;  // n_heads is a multiple of n_kv_heads (GQA group)
  float scale = 1;       // 1/sqrt(head_dim)
  KvType kv_type = KvType::f16;
  const uint8_t* k = nullptr;  // cache K of this layer, slot 0 (element [pos][kv_head][head_dim])
  const uint8_t* v = nullptr;  // cache V, same layout
  int64_t seq_stride = 0;      // elements between slot s and s+1 of the same layer
  int64_t pos_stride = 0;      // elements between positions (= n_kv_heads * head_dim)
  // An F16 cache may take the AVX512-BF16 flash entry, which rounds its K/V (and Q, P) to BF16:
  // twice the F32 entry's speed, about 7x its error through a model (bench/RESULTS.md "CPU attention
  // at long context"). Dispatch: MIXTILE_ATTENTION_BF16=1 (attention_args_for); by name: always.
  bool bf16_dots = false;
};

struct AttentionKernel {
  Isa isa;
  const char* name;
  bool (*accepts)(const AttentionArgs&);
  void (*fn)(const AttentionArgs&);
};

// Dispatch table, best first (attention.cc); the scalar entry takes every call.
const std::vector<AttentionKernel>& attention_kernels();
// First entry the active ISA runs and that accepts `a`.
const AttentionKernel& attention_select(const AttentionArgs& a);
// Args for `layer` of `kv` (k, v, strides, type, bf16_dots); the caller fills q, out, pos, seq, n, heads, scale.
AttentionArgs attention_args_for(const KvCache& kv, int layer);

// Runs fn(task, thread) over [0, n_tasks): on the pool, or on the calling thread when the call's
// work (multiply-adds) is too small to pay for waking workers (decode at short contexts).
constexpr int64_t ATTENTION_SERIAL_MACS = 1 << 16;
void attention_for(const AttentionArgs& a, int64_t n_tasks, const std::function<void(int64_t, int)>& fn);

void attention_scalar(const AttentionArgs& a);
void attention_avx512(const AttentionArgs& a);
bool attention_avx512_accepts(const AttentionArgs& a);
// Query blocks x KV tiles (attention-flash-avx512.cc): prefill batches; decode keeps avx512.
void attention_flash_avx512(const AttentionArgs& a);
bool attention_flash_avx512_accepts(const AttentionArgs& a);
// The same over an F16 or BF16 cache with AVX512-BF16 dot products (Q, P and F16 K/V rounded to BF16).
void attention_flash_avx512bf16(const AttentionArgs& a);
bool attention_flash_avx512bf16_accepts(const AttentionArgs& a);

}  // namespace mixtile
