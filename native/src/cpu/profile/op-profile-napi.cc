// JS exports: opProfileEnable(on), opProfileReset(), opProfileRead() -> [{name, parent, calls, ns, bytes, flops}].
#include "cpu/profile/op-profile.h"
#include "napi-registry.h"

namespace mixtile {
namespace {

Napi::Value op_profile_enable_js(const Napi::CallbackInfo& info) {
  if (!info[0].IsBoolean()) throw Napi::TypeError::New(info.Env(), "opProfileEnable: expected a boolean");
  op_profile_enable(info[0].As<Napi::Boolean>().Value());
  return info.Env().Undefined();
}

Napi::Value op_profile_reset_js(const Napi::CallbackInfo& info) {
  op_profile_reset();
  return info.Env().Undefined();
}

Napi::Value op_profile_read_js(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  for (int i = 0; i < int(Op::count); ++i) {
    const OpInfo& in = op_info(Op(i));
    OpCounters c = op_profile_get(Op(i));
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", in.name);
    o.Set("parent", in.parent < 0 ? env.Null() : Napi::String::New(env, op_info(Op(in.parent)).name));
    o.Set("calls", double(c.calls));
    o.Set("ns", double(c.ns));
    o.Set("bytes", double(c.bytes));
    o.Set("flops", double(c.flops));
    out.Set(uint32_t(i), o);
  }
  return out;
}

}  // namespace

MIXTILE_EXPORT("opProfileEnable", op_profile_enable_js);
MIXTILE_EXPORT("opProfileReset", op_profile_reset_js);
MIXTILE_EXPORT("opProfileRead", op_profile_read_js);

}  // namespace mixtile
