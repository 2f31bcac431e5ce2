// Attention dispatch: for head_dim a multiple of 16 (64 and 128 in every Qwen3 model) the
// flash AVX-512 path when some sequence brings 2+ tokens (prefill), the per-token AVX-512 path
// for decode batches; the scalar reference otherwise. A BF16 cache takes the AVX512-BF16 flash
// entry where the CPU has it (Q and P rounded to BF16), an F16 cache too with
// MIXTILE_ATTENTION_BF16=1 (its K/V rounded as well).
#include "cpu/attention/attention.h"

#include <cstdlib>
#include <string>

#include "threadpool.h"

namespace mixtile {

const std::vector<AttentionKernel>& attention_kernels() {
  static const std::vector<AttentionKernel> table = {
      {Isa::avx512bf16, "flash-avx512bf16", attention_flash_avx512bf16_accepts, attention_flash_avx512bf16},
      {Isa::avx512, "flash-avx512", attention_flash_avx512_accepts, attention_flash_avx512},
      {Isa::avx512, "avx512", attention_avx512_accepts, attention_avx512},
      {Isa::scalar, "scalar", [](const AttentionArgs&) { return true; }, attention_scalar},
  };
  return table;
}

const AttentionKernel& attention_select(const AttentionArgs& a) {
  const Isa active = active_isa();
  for (const auto& k : attention_kernels()) {
    if (k.isa <= active && k.accepts(a)) return k;
  }
  return attention_kernels().back();
}

void attention_for(const AttentionArgs& a, int64_t n_tasks, const std::function<void(int64_t, int)>& fn) {
  int64_t macs = 0;
  for (int64_t i = 0; i < a.n; ++i) macs += (int64_t(a.pos[i]) + 1) * a.n_heads * a.head_dim * 2;
  if (macs < ATTENTION_SERIAL_MACS) {
    for (int64_t t = 0; t < n_tasks; ++t) fn(t, 0);
  } else {
    parallel_for(n_tasks, fn);
  }
}

AttentionArgs attention_args_for(const KvCache& kv, int layer) {
  AttentionArgs a;
  a.kv_type = kv.type;
  a.k = kv.k->data + kv.offset(0, layer, 0);
  a.v = kv.v->data + kv.offset(0, layer, 0);
  a.seq_stride = kv.seq_stride();
  a.pos_stride = kv.pos_stride();
  a.n_kv_heads = kv.n_kv_heads;
  a.head_dim = kv.head_dim;
  static const bool bf16_dots = [] {
    const char* e = std::getenv("MIXTILE_ATTENTION_BF16");
    return e && std::string(e) == "1";
  }();
  a.bf16_dots = bf16_dots;
  return a;
}

}  // namespace mixtile
