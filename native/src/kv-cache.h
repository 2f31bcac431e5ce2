// KV cache in native memory: one K and one V array per model, laid out
// [n_seq][n_layers][ctx][n_kv_heads][head_dim] in f32, f16 or bf16. Holds data only: which
// positions of a slot are valid is tracked by the caller (src/model/kv-slots.ts).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "tensor.h"

namespace mixtile {

enum class KvType : int32_t { f32 = 0, f16 = 1, bf16 = 2 };

struct KvCache {
  KvType type = KvType::f16;
  int n_seq = 0, n_layers = 0, ctx = 0, n_kv_heads = 0, head_dim = 0;
  size_t elem_bytes = 2;
  std::unique_ptr<Buffer> k, v;

  // Elements between consecutive positions / layers / sequences.
  int64_t pos_stride() const { return int64_t(n_kv_heads) * head_dim; }
  int64_t layer_stride() const { return int64_t(ctx) * pos_stride(); }
  int64_t seq_stride() const { return int64_t(n_layers) * layer_stride(); }
  // Byte offset of (seq, layer, pos, kv head 0) in k or v.
  size_t offset(int seq, int layer, int64_t pos) const {
    return size_t((int64_t(seq) * seq_stride() + int64_t(layer) * layer_stride() + pos * pos_stride())) * elem_bytes;
  }
};

// Allocates (pages are committed lazily by the OS, so an unused context costs no RSS).
// Throws std::invalid_argument on non-positive sizes.
std::shared_ptr<KvCache> kv_cache_create(KvType type, int n_seq, int n_layers, int ctx, int n_kv_heads, int head_dim);

// Stores k, v rows [n, n_kv_heads * head_dim] F32 of token i at (seq[i], layer, pos[i]), converting
// to the cache type. Callers have checked 0 <= seq < n_seq and 0 <= pos < ctx.
void kv_cache_write(KvCache& kv, int layer, int64_t n, const int32_t* seq, const int32_t* pos, const float* k,
                    const float* v);

// Copies positions [0, n_tokens) of every layer from slot src to slot dst.
void kv_cache_copy(KvCache& kv, int src, int dst, int64_t n_tokens);

// One cache element as float (scalar paths and tests).
inline float kv_load(KvType t, const uint8_t* base, int64_t i) {
  switch (t) {
    case KvType::f32: return reinterpret_cast<const float*>(base)[i];
    case KvType::f16: return fp16_to_fp32(reinterpret_cast<const uint16_t*>(base)[i]);
    default: return bf16_to_fp32(reinterpret_cast<const uint16_t*>(base)[i]);
  }
}

}  // namespace mixtile
