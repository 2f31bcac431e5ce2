// Tagged N-API handles for the model-layer natives (KV cache, attention layer, FFN blocks) and a
// guard that turns C++ exceptions into JS errors. Each kind gets its own type tag, so passing a
// KV cache where an attention layer is expected is a TypeError, never a crash.
#pragma once
#include <napi.h>

#include <exception>
#include <memory>
#include <string>

#include "napi-util.h"

namespace mixtile {

enum class ModelHandle : uint64_t { kv_cache = 1, attention_layer = 2, ffn_block = 3, lm_head = 4 };

inline const napi_type_tag* model_handle_tag(ModelHandle kind) {
  static napi_type_tag tags[5] = {};
  static bool init = [] {
    for (uint64_t i = 0; i < 5; ++i) tags[i] = {0x4d6f64656c48646cull, 0x9b1d7f3a00000000ull + i};
    return true;
  }();
  (void)init;
  return &tags[uint64_t(kind) % 5];
}

template <class T>
Napi::Value make_model_handle(Napi::Env env, ModelHandle kind, std::shared_ptr<T> p) {
  auto* h = new Handle<T>{std::move(p)};
  auto ext = Napi::External<Handle<T>>::New(env, h, [](Napi::Env, Handle<T>* hp) { delete hp; });
  ext.TypeTag(model_handle_tag(kind));
  return ext;
}

template <class T>
Handle<T>* model_handle_arg(const Napi::Value& v, ModelHandle kind, const char* what) {
  if (!v.IsExternal() || !v.As<Napi::External<Handle<T>>>().CheckTypeTag(model_handle_tag(kind))) {
    throw Napi::TypeError::New(v.Env(), std::string(what) + ": expected a native handle of the right kind");
  }
  return v.As<Napi::External<Handle<T>>>().Data();
}

template <class T>
std::shared_ptr<T> model_handle_get(const Napi::Value& v, ModelHandle kind, const char* what) {
  auto* h = model_handle_arg<T>(v, kind, what);
  if (!h->ptr) throw Napi::Error::New(v.Env(), std::string(what) + ": handle was disposed");
  return h->ptr;
}

// Runs fn; a std::exception other than a JS error becomes a JS Error carrying its message.
template <class F>
Napi::Value napi_guard(const Napi::CallbackInfo& info, F&& fn) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), e.what());
  }
}

}  // namespace mixtile
