// JS export for the F16 row test: f16RowRun(src: Float32Array, dst: Uint16Array) through the dispatch.
#include "cpu/convert/f16-row.h"
#include "napi-registry.h"
#include "napi-util.h"

namespace mixtile {
namespace {

Napi::Value f16_row_run_js(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw Napi::TypeError::New(env, "f16RowRun: src must be a Float32Array");
  }
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint16_array) {
    throw Napi::TypeError::New(env, "f16RowRun: dst must be a Uint16Array");
  }
  Napi::Float32Array src = info[0].As<Napi::Float32Array>();
  Napi::Uint16Array dst = info[1].As<Napi::Uint16Array>();
  if (dst.ElementLength() < src.ElementLength()) throw Napi::RangeError::New(env, "f16RowRun: dst is shorter than src");
  fp32_to_fp16_row(src.Data(), dst.Data(), int64_t(src.ElementLength()));
  return env.Undefined();
}

}  // namespace

MIXTILE_EXPORT("f16RowRun", f16_row_run_js);

}  // namespace mixtile
