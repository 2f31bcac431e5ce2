// N-API surface of the embedding lookup (src/native/embed.ts).
#include <string>

#include "cpu/attention/handles.h"
#include "cpu/embed/embed.h"
#include "napi-registry.h"

namespace mixtile {

namespace {

// embedRows(table weight handle, ids Int32Array[n], n, out Float32Array[n, hidden])
Napi::Value embed_rows_js(const Napi::CallbackInfo& info) {
  return napi_guard(info, [&]() -> Napi::Value {
    auto table = weight_arg(info[0], "token_embd");
    int64_t n = int_arg(info[2], 1 << 24, "n");
    const int32_t* ids = i32_array(info[1], size_t(n), "ids");
    const int64_t vocab = table->ne[1];
    for (int64_t i = 0; i < n; ++i) {
      if (ids[i] < 0 || ids[i] >= vocab) {
        throw Napi::RangeError::New(info.Env(), "token " + std::to_string(i) + ": id " + std::to_string(ids[i]) +
                                                    " outside the vocabulary [0, " + std::to_string(vocab) + ")");
      }
    }
    embed_rows(*table, ids, n, f32_array(info[3], size_t(n * table->ne[0]), "out"));
    return info.Env().Undefined();
  });
}

}  // namespace

MIXTILE_EXPORT("embedRows", embed_rows_js);

}  // namespace mixtile
