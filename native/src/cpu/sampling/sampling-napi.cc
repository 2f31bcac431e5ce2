// JS exports (src/native/sampling.ts): logitsArgmax(row) -> id | -1, logitsTopK(row, k) -> Int32Array | null,
// logitsAboveGap(row, gap, sorted) -> Int32Array | null. -1 / null: the row holds a NaN (the JS
// reference decides those).
#include <cstring>
#include <vector>

#include "cpu/sampling/sampling.h"
#include "napi-registry.h"
#include "napi-util.h"

namespace mixtile {
namespace {

struct Row {
  const float* x;
  int64_t n;
};

Row row_arg(const Napi::CallbackInfo& info, const char* fn) {
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw Napi::TypeError::New(info.Env(), std::string(fn) + ": expected a Float32Array of logits");
  }
  auto a = info[0].As<Napi::Float32Array>();
  return {a.Data(), int64_t(a.ElementLength())};
}

Napi::Value ids_array(Napi::Env env, const std::vector<int32_t>& ids) {
  auto out = Napi::Int32Array::New(env, ids.size());
  if (!ids.empty()) std::memcpy(out.Data(), ids.data(), ids.size() * 4);
  return out;
}

Napi::Value logits_argmax_js(const Napi::CallbackInfo& info) {
  Row r = row_arg(info, "logitsArgmax");
  int64_t best = -1;
  if (!logits_argmax(r.x, r.n, &best)) best = -1;
  return Napi::Number::New(info.Env(), double(best));
}

Napi::Value logits_top_k_js(const Napi::CallbackInfo& info) {
  Row r = row_arg(info, "logitsTopK");
  int64_t k = int_arg(info[1], int64_t(1) << 31, "logitsTopK: k");
  std::vector<int32_t> ids;
  if (!logits_top_k(r.x, r.n, k, &ids)) return info.Env().Null();
  return ids_array(info.Env(), ids);
}

Napi::Value logits_above_gap_js(const Napi::CallbackInfo& info) {
  Row r = row_arg(info, "logitsAboveGap");
  if (!info[1].IsNumber() || !(info[1].As<Napi::Number>().DoubleValue() >= 0)) {
    throw Napi::TypeError::New(info.Env(), "logitsAboveGap: gap must be a number >= 0");
  }
  std::vector<int32_t> ids;
  if (!logits_above_gap(r.x, r.n, info[1].As<Napi::Number>().DoubleValue(), info[2].ToBoolean().Value(), &ids)) {
    return info.Env().Null();
  }
  return ids_array(info.Env(), ids);
}

}  // namespace

MIXTILE_EXPORT("logitsArgmax", logits_argmax_js);
MIXTILE_EXPORT("logitsTopK", logits_top_k_js);
MIXTILE_EXPORT("logitsAboveGap", logits_above_gap_js);

}  // namespace mixtile
