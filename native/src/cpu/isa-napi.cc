// JS exports: isaInfo(), setIsa(name), setThreads(n).
#include "cpu/isa.h"
#include "napi-registry.h"
#include "napi-util.h"
#include "threadpool.h"

namespace mixtile {
namespace {

Napi::Value isa_info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto o = Napi::Object::New(env);
  o.Set("cpu", cpu_brand());
  o.Set("detected", isa_name(detected_isa()));
  o.Set("active", isa_name(active_isa()));
  auto feats = cpu_features();
  auto arr = Napi::Array::New(env, feats.size());
  for (size_t i = 0; i < feats.size(); ++i) arr.Set(uint32_t(i), feats[i]);
  o.Set("features", arr);
  o.Set("amxTile", amx_tile_granted());
  o.Set("threads", pool_threads());
  return o;
}

Napi::Value set_isa_js(const Napi::CallbackInfo& info) {
  if (!info[0].IsString()) throw Napi::TypeError::New(info.Env(), "setIsa: expected an ISA name");
  std::string s = info[0].As<Napi::String>().Utf8Value();
  Isa level;
  if (!parse_isa(s, &level)) {
    throw Napi::RangeError::New(info.Env(), "setIsa: unknown ISA \"" + s +
                                                "\" (known: scalar, avx2, avx512, avx512vnni, avx512bf16, amx)");
  }
  if (!set_isa(level)) {
    throw Napi::RangeError::New(info.Env(), std::string("setIsa: ") + s + " is above what this CPU supports (" +
                                                isa_name(detected_isa()) + ")");
  }
  return info.Env().Undefined();
}

Napi::Value set_threads_js(const Napi::CallbackInfo& info) {
  set_threads(int(int_arg(info[0], 256, "setThreads")));
  return Napi::Number::New(info.Env(), pool_threads());
}

}  // namespace

MIXTILE_EXPORT("isaInfo", isa_info);
MIXTILE_EXPORT("setIsa", set_isa_js);
MIXTILE_EXPORT("setThreads", set_threads_js);

}  // namespace mixtile
