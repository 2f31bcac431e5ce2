// Handle tags and argument checks for the N-API layer (see napi-util.h).
#include "napi-util.h"

namespace mixtile {

const napi_type_tag* handle_tag(HandleKind kind) {
  // Random 128-bit tags, one per kind (upper half fixed, lower half = kind).
  static napi_type_tag tags[6];
  static bool init = [] {
    for (int i = 0; i < 6; ++i) tags[i] = {0x6d69787469ull << 16 | 0x7e11, 0x3c5a9e0000000000ull + uint64_t(i)};
    return true;
  }();
  (void)init;
  return &tags[int(kind) % 6];
}

Weight* unwrap_weight(const Napi::Value& v) { return handle_get<Weight>(v, HandleKind::weight, "weight").get(); }

std::shared_ptr<Weight> weight_arg(const Napi::Value& v, const char* what) {
  return handle_get<Weight>(v, HandleKind::weight, what);
}

Napi::Value make_weight_handle(Napi::Env env, std::shared_ptr<Weight> w) {
  return make_handle<Weight>(env, HandleKind::weight, std::move(w));
}

float* f32_array(const Napi::Value& v, size_t min_len, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw Napi::TypeError::New(v.Env(), std::string(what) + ": expected a Float32Array");
  }
  auto a = v.As<Napi::Float32Array>();
  if (a.ElementLength() < min_len) {
    throw Napi::RangeError::New(v.Env(), std::string(what) + ": expected at least " + std::to_string(min_len) +
                                             " elements, got " + std::to_string(a.ElementLength()));
  }
  return a.Data();
}

int32_t* i32_array(const Napi::Value& v, size_t min_len, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throw Napi::TypeError::New(v.Env(), std::string(what) + ": expected an Int32Array");
  }
  auto a = v.As<Napi::Int32Array>();
  if (a.ElementLength() < min_len) {
    throw Napi::RangeError::New(v.Env(), std::string(what) + ": expected at least " + std::to_string(min_len) +
                                             " elements, got " + std::to_string(a.ElementLength()));
  }
  return a.Data();
}

int64_t int_arg(const Napi::Value& v, int64_t max, const char* what) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(what) + ": expected a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > double(max) || d != double(int64_t(d))) {
    throw Napi::RangeError::New(v.Env(), std::string(what) + ": expected an integer in [0, " + std::to_string(max) +
                                             "], got " + std::to_string(d));
  }
  return int64_t(d);
}

}  // namespace mixtile
