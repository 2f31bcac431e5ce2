// Embedding lookup via dequantize_row, one row per token, spread over the pool for prefill.
#include "cpu/embed/embed.h"

#include "cpu/dequant/dequant.h"
#include "threadpool.h"

namespace mixtile {

void embed_rows(const Weight& table, const int32_t* ids, int64_t n, float* out) {
  const int64_t hidden = table.ne[0];
  auto one = [&](int64_t i) {
    dequantize_row(table.type, table.data + size_t(ids[i]) * table.row_bytes, out + i * hidden, hidden);
  };
  if (n < 8) {
    for (int64_t i = 0; i < n; ++i) one(i);
  } else {
    parallel_for(n, [&](int64_t i, int) { one(i); });
  }
}

}  // namespace mixtile
