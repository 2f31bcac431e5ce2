// JS exports: linearLoad(weight, backend = "auto") -> handle, linearForward(h, x, nTokens, out), linearDispose(h),
// linearKernelName(h, nTokens), linearForwardMulti([h...], x, nTokens, [out...]).
#include <memory>
#include <string>
#include <vector>

#include "cpu/linear/linear.h"
#include "napi-registry.h"
#include "napi-util.h"

namespace mixtile {
namespace {

Napi::Value linear_load_js(const Napi::CallbackInfo& info) {
  auto w = weight_arg(info[0], "linearLoad");
  if (!info[1].IsUndefined() && !info[1].IsString()) throw Napi::TypeError::New(info.Env(), "linearLoad: backend must be a string");
  const std::string backend = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "auto";
  try {
    return make_handle<LinearWeight>(info.Env(), HandleKind::linear, linear_load(*w, backend));
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), std::string("linearLoad: ") + e.what());
  }
}

Napi::Value linear_forward_js(const Napi::CallbackInfo& info) {
  auto lw = handle_get<LinearWeight>(info[0], HandleKind::linear, "linearForward");
  int64_t n = int_arg(info[2], int64_t(1) << 24, "linearForward: nTokens");
  const float* x = f32_array(info[1], size_t(n * lw->k), "linearForward: x");
  float* y = f32_array(info[3], size_t(n * lw->m), "linearForward: out");
  try {
    linear_forward(*lw, x, n, y);
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), std::string("linearForward: ") + e.what());
  }
  return info.Env().Undefined();
}

Napi::Value linear_forward_multi_js(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray() || !info[3].IsArray()) throw Napi::TypeError::New(env, "linearForwardMulti: expected arrays of handles and outputs");
  Napi::Array hs = info[0].As<Napi::Array>(), outs = info[3].As<Napi::Array>();
  if (hs.Length() == 0 || hs.Length() != outs.Length() || hs.Length() > 16) {
    throw Napi::RangeError::New(env, "linearForwardMulti: need 1-16 handles and as many outputs");
  }
  int64_t n = int_arg(info[2], int64_t(1) << 24, "linearForwardMulti: nTokens");
  std::vector<std::shared_ptr<LinearWeight>> keep;
  std::vector<const LinearWeight*> ws;
  std::vector<float*> ys;
  for (uint32_t i = 0; i < hs.Length(); ++i) {
    keep.push_back(handle_get<LinearWeight>(hs.Get(i), HandleKind::linear, "linearForwardMulti"));
    ws.push_back(keep.back().get());
    ys.push_back(f32_array(outs.Get(i), size_t(n * ws.back()->m), "linearForwardMulti: out"));
  }
  const float* x = f32_array(info[1], size_t(n * ws[0]->k), "linearForwardMulti: x");
  try {
    linear_forward_multi(ws.data(), int(ws.size()), x, n, ys.data());
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("linearForwardMulti: ") + e.what());
  }
  return env.Undefined();
}

Napi::Value linear_dispose_js(const Napi::CallbackInfo& info) {
  handle_arg<LinearWeight>(info[0], HandleKind::linear, "linearDispose")->ptr.reset();
  return info.Env().Undefined();
}

Napi::Value linear_kernel_name(const Napi::CallbackInfo& info) {
  auto lw = handle_get<LinearWeight>(info[0], HandleKind::linear, "linearKernelName");
  int64_t n = int_arg(info[1], int64_t(1) << 24, "linearKernelName: nTokens");
  if (const char* amx = linear_amx_name(*lw, n)) return Napi::String::New(info.Env(), amx);
  GemmArgs probe{lw->w.data, lw->w.row_bytes, lw->m, nullptr, 0, n, lw->k, nullptr, lw->m};
  const GemmKernel* k = gemm_select(lw->w.type, probe);
  return Napi::String::New(info.Env(), k ? k->name : "none");
}

}  // namespace

MIXTILE_EXPORT("linearLoad", linear_load_js);
MIXTILE_EXPORT("linearForward", linear_forward_js);
MIXTILE_EXPORT("linearForwardMulti", linear_forward_multi_js);
MIXTILE_EXPORT("linearDispose", linear_dispose_js);
MIXTILE_EXPORT("linearKernelName", linear_kernel_name);

}  // namespace mixtile
