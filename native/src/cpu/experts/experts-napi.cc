// JS exports: expertsLoad(gate, up, down, router) -> handle, moeForward(h, x, n, topK, norm, out),
// moeForwardRouted(h, x, n, ids, weights, topK, out), moeRoute(h, x, n, topK, norm, ids, weights),
// expertsDispose(h), expertsKernelName(h, n, topK).
#include "cpu/experts/experts.h"
#include "napi-registry.h"
#include "napi-util.h"

namespace mixtile {
namespace {

constexpr int64_t MAX_TOKENS = int64_t(1) << 24;

template <class F>
Napi::Value guarded(const Napi::CallbackInfo& info, const char* fn, F body) {
  try {
    body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), std::string(fn) + ": " + e.what());
  }
  return info.Env().Undefined();
}

Napi::Value experts_load_js(const Napi::CallbackInfo& info) {
  auto gate = weight_arg(info[0], "expertsLoad: gate");
  auto up = weight_arg(info[1], "expertsLoad: up");
  auto down = weight_arg(info[2], "expertsLoad: down");
  auto router = weight_arg(info[3], "expertsLoad: router");
  std::shared_ptr<ExpertsWeights> ew;
  guarded(info, "expertsLoad", [&] { ew = experts_load(*gate, *up, *down, *router); });
  return make_handle<ExpertsWeights>(info.Env(), HandleKind::experts, ew);
}

int top_k_arg(const Napi::Value& v, const ExpertsWeights& ew, const char* what) {
  int64_t k = int_arg(v, ew.n_expert, what);
  if (k < 1) throw Napi::RangeError::New(v.Env(), std::string(what) + ": must be >= 1");
  return int(k);
}

Napi::Value moe_forward_js(const Napi::CallbackInfo& info) {
  auto ew = handle_get<ExpertsWeights>(info[0], HandleKind::experts, "moeForward");
  int64_t n = int_arg(info[2], MAX_TOKENS, "moeForward: nTokens");
  const float* x = f32_array(info[1], size_t(n * ew->hidden), "moeForward: x");
  int k = top_k_arg(info[3], *ew, "moeForward: topK");
  bool norm = info[4].ToBoolean();
  float* y = f32_array(info[5], size_t(n * ew->hidden), "moeForward: out");
  return guarded(info, "moeForward", [&] { moe_forward(*ew, x, n, k, norm, y); });
}

Napi::Value moe_forward_routed_js(const Napi::CallbackInfo& info) {
  auto ew = handle_get<ExpertsWeights>(info[0], HandleKind::experts, "moeForwardRouted");
  int64_t n = int_arg(info[2], MAX_TOKENS, "moeForwardRouted: nTokens");
  const float* x = f32_array(info[1], size_t(n * ew->hidden), "moeForwardRouted: x");
  int k = top_k_arg(info[5], *ew, "moeForwardRouted: topK");
  const int32_t* ids = i32_array(info[3], size_t(n * k), "moeForwardRouted: ids");
  const float* w = f32_array(info[4], size_t(n * k), "moeForwardRouted: weights");
  float* y = f32_array(info[6], size_t(n * ew->hidden), "moeForwardRouted: out");
  return guarded(info, "moeForwardRouted", [&] { moe_forward_routed(*ew, x, n, ids, w, k, y); });
}

Napi::Value moe_route_js(const Napi::CallbackInfo& info) {
  auto ew = handle_get<ExpertsWeights>(info[0], HandleKind::experts, "moeRoute");
  int64_t n = int_arg(info[2], MAX_TOKENS, "moeRoute: nTokens");
  const float* x = f32_array(info[1], size_t(n * ew->hidden), "moeRoute: x");
  int k = top_k_arg(info[3], *ew, "moeRoute: topK");
  bool norm = info[4].ToBoolean();
  int32_t* ids = i32_array(info[5], size_t(n * k), "moeRoute: ids");
  float* w = f32_array(info[6], size_t(n * k), "moeRoute: weights");
  return guarded(info, "moeRoute", [&] { moe_route(*ew, x, n, k, norm, ids, w); });
}

Napi::Value experts_dispose_js(const Napi::CallbackInfo& info) {
  handle_arg<ExpertsWeights>(info[0], HandleKind::experts, "expertsDispose")->ptr.reset();
  return info.Env().Undefined();
}

Napi::Value experts_kernel_name(const Napi::CallbackInfo& info) {
  auto ew = handle_get<ExpertsWeights>(info[0], HandleKind::experts, "expertsKernelName");
  int64_t n = int_arg(info[1], MAX_TOKENS, "expertsKernelName: nTokens");
  int k = top_k_arg(info[2], *ew, "expertsKernelName: topK");
  MoeArgs a{nullptr, n, nullptr, nullptr, k, nullptr};
  return Napi::String::New(info.Env(), experts_select_name(*ew, a));
}

}  // namespace

MIXTILE_EXPORT("expertsLoad", experts_load_js);
MIXTILE_EXPORT("moeForward", moe_forward_js);
MIXTILE_EXPORT("moeForwardRouted", moe_forward_routed_js);
MIXTILE_EXPORT("moeRoute", moe_route_js);
MIXTILE_EXPORT("expertsDispose", experts_dispose_js);
MIXTILE_EXPORT("expertsKernelName", experts_kernel_name);

}  // namespace mixtile
