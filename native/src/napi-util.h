// N-API helpers shared by every *-napi.cc: typed handles (externals with a type tag, disposable,
// holding a shared_ptr so a native op keeps its data alive), argument checks that throw JS errors.
#pragma once
#include <napi.h>

#include <memory>
#include <string>

#include "tensor.h"

namespace mixtile {

// One tag per handle kind, so passing an ExpertsHandle where a Weight is expected is a TypeError.
enum class HandleKind : uint64_t { mapped_file = 1, weight = 2, linear = 3, experts = 4, other = 5 };

// What a JS handle holds. dispose() (JS) resets `ptr`; natives that still hold a copy of the
// shared_ptr keep the object alive until they drop it.
template <class T>
struct Handle {
  std::shared_ptr<T> ptr;
};

const napi_type_tag* handle_tag(HandleKind kind);

// Wraps `p` in a new tagged external whose finalizer drops the reference.
template <class T>
Napi::Value make_handle(Napi::Env env, HandleKind kind, std::shared_ptr<T> p) {
  auto* h = new Handle<T>{std::move(p)};
  auto ext = Napi::External<Handle<T>>::New(env, h, [](Napi::Env, Handle<T>* hp) { delete hp; });
  ext.TypeTag(handle_tag(kind));
  return ext;
}

// The Handle behind `v`; throws a JS TypeError naming `what` if `v` is not a handle of `kind`.
template <class T>
Handle<T>* handle_arg(const Napi::Value& v, HandleKind kind, const char* what) {
  if (!v.IsExternal() || !v.As<Napi::External<Handle<T>>>().CheckTypeTag(handle_tag(kind))) {
    throw Napi::TypeError::New(v.Env(), std::string(what) + ": expected a native handle of the right kind");
  }
  return v.As<Napi::External<Handle<T>>>().Data();
}

// The live object behind a handle (a shared_ptr copy: keep it for the duration of the call);
// throws a JS Error if the handle was disposed.
template <class T>
std::shared_ptr<T> handle_get(const Napi::Value& v, HandleKind kind, const char* what) {
  auto* h = handle_arg<T>(v, kind, what);
  if (!h->ptr) throw Napi::Error::New(v.Env(), std::string(what) + ": handle was disposed");
  return h->ptr;
}

// The Weight behind a weight handle (borrowed pointer, valid while the caller holds the handle
// value on its stack). Throws a JS TypeError on a wrong argument, Error if disposed.
Weight* unwrap_weight(const Napi::Value& v);
std::shared_ptr<Weight> weight_arg(const Napi::Value& v, const char* what);
// Wraps a Weight as a JS weight handle.
Napi::Value make_weight_handle(Napi::Env env, std::shared_ptr<Weight> w);

// Data of a Float32Array argument with at least min_len elements; throws a JS TypeError otherwise.
float* f32_array(const Napi::Value& v, size_t min_len, const char* what);
// Same for Int32Array.
int32_t* i32_array(const Napi::Value& v, size_t min_len, const char* what);
// A non-negative integer argument no larger than max; throws a JS TypeError/RangeError otherwise.
int64_t int_arg(const Napi::Value& v, int64_t max, const char* what);

}  // namespace mixtile
