// KV cache storage: allocation, per-token writes with type conversion, slot copies.
#include "kv-cache.h"

#include <cstring>
#include <stdexcept>
#include <string>

#include "cpu/convert/f16-row.h"

namespace mixtile {

std::shared_ptr<KvCache> kv_cache_create(KvType type, int n_seq, int n_layers, int ctx, int n_kv_heads, int head_dim) {
  if (n_seq <= 0 || n_layers <= 0 || ctx <= 0 || n_kv_heads <= 0 || head_dim <= 0) {
    throw std::invalid_argument("kv cache: sizes must be positive (n_seq " + std::to_string(n_seq) + ", layers " +
                                std::to_string(n_layers) + ", ctx " + std::to_string(ctx) + ", kv heads " +
                                std::to_string(n_kv_heads) + ", head dim " + std::to_string(head_dim) + ")");
  }
  auto kv = std::make_shared<KvCache>();
  kv->type = type;
  kv->n_seq = n_seq;
  kv->n_layers = n_layers;
  kv->ctx = ctx;
  kv->n_kv_heads = n_kv_heads;
  kv->head_dim = head_dim;
  kv->elem_bytes = type == KvType::f32 ? 4 : 2;
  size_t bytes = size_t(kv->seq_stride()) * size_t(n_seq) * kv->elem_bytes;
  kv->k = std::make_unique<Buffer>(bytes);
  kv->v = std::make_unique<Buffer>(bytes);
  return kv;
}

static void store_row(KvType t, const float* src, uint8_t* dst, int64_t n) {
  switch (t) {
    case KvType::f32:
      std::memcpy(dst, src, size_t(n) * 4);
      break;
    case KvType::f16:
      fp32_to_fp16_row(src, reinterpret_cast<uint16_t*>(dst), n);
      break;
    case KvType::bf16: {
      auto* d = reinterpret_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = fp32_to_bf16(src[i]);
      break;
    }
  }
}

void kv_cache_write(KvCache& kv, int layer, int64_t n, const int32_t* seq, const int32_t* pos, const float* k,
                    const float* v) {
  const int64_t row = kv.pos_stride();
  for (int64_t i = 0; i < n; ++i) {
    size_t off = kv.offset(seq[i], layer, pos[i]);
    store_row(kv.type, k + i * row, kv.k->data + off, row);
    store_row(kv.type, v + i * row, kv.v->data + off, row);
  }
}

void kv_cache_copy(KvCache& kv, int src, int dst, int64_t n_tokens) {
  if (src == dst || n_tokens <= 0) return;
  size_t bytes = size_t(n_tokens * kv.pos_stride()) * kv.elem_bytes;
  for (int l = 0; l < kv.n_layers; ++l) {
    std::memcpy(kv.k->data + kv.offset(dst, l, 0), kv.k->data + kv.offset(src, l, 0), bytes);
    std::memcpy(kv.v->data + kv.offset(dst, l, 0), kv.v->data + kv.offset(src, l, 0), bytes);
  }
}

}  // namespace mixtile
