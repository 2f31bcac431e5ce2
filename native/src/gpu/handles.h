// Tagged N-API handles of the GPU objects (context, attention, FFN, embedding, head), each kind with its
// own type tag so a wrong handle is a TypeError, never a crash; every op holds its context alive.
#pragma once
#include <napi.h>

#include <memory>
#include <string>

#include "napi-util.h"

namespace mixtile::gpu {

enum class GpuHandle : uint64_t { context = 0, attention = 1, ffn = 2, embedding = 3, lm_head = 4 };

inline const napi_type_tag* gpu_handle_tag(GpuHandle kind) {
  static napi_type_tag tags[5] = {};
  static bool init = [] {
    for (uint64_t i = 0; i < 5; ++i) tags[i] = {0x4750556374784d78ull, 0x51c3a97e00000000ull + i};
    return true;
  }();
  (void)init;
  return &tags[uint64_t(kind) % 5];
}

template <class T>
Napi::Value make_gpu_handle(Napi::Env env, GpuHandle kind, std::shared_ptr<T> p) {
  auto* h = new Handle<T>{std::move(p)};
  auto ext = Napi::External<Handle<T>>::New(env, h, [](Napi::Env, Handle<T>* hp) { delete hp; });
  ext.TypeTag(gpu_handle_tag(kind));
  return ext;
}

template <class T>
Handle<T>* gpu_handle_arg(const Napi::Value& v, GpuHandle kind, const char* what) {
  if (!v.IsExternal() || !v.As<Napi::External<Handle<T>>>().CheckTypeTag(gpu_handle_tag(kind))) {
    throw Napi::TypeError::New(v.Env(), std::string(what) + ": expected a native GPU handle of the right kind");
  }
  return v.As<Napi::External<Handle<T>>>().Data();
}

template <class T>
std::shared_ptr<T> gpu_handle_get(const Napi::Value& v, GpuHandle kind, const char* what) {
  auto* h = gpu_handle_arg<T>(v, kind, what);
  if (!h->ptr) throw Napi::Error::New(v.Env(), std::string(what) + ": handle was disposed");
  return h->ptr;
}

// Runs fn; a std::exception becomes a JS Error whose message starts with `fn_name`.
template <class F>
Napi::Value gpu_guard(const Napi::CallbackInfo& info, const char* fn_name, F&& fn) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), std::string(fn_name) + ": " + e.what());
  }
}

inline Napi::Object options_arg(const Napi::CallbackInfo& info, const char* fn) {
  if (!info[0].IsObject()) throw Napi::TypeError::New(info.Env(), std::string(fn) + ": expected an options object");
  return info[0].As<Napi::Object>();
}

inline double num_opt(const Napi::Object& o, const char* key, const char* fn) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string(fn) + ": " + key + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

}  // namespace mixtile::gpu
