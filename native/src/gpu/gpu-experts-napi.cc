// JS exports for tests and `mixtile bench --op experts --device`: one layer's experts (an experts
// handle) run on the CPU, the GPU or split between both, host in / host out.
//   gpuExpertsForward(experts, x, n, ids, weights, topK, placement, out, onGpu?) -> result object
//   gpuExpertsCost(experts) -> the cost model's constants (measured on these weights on first use)
//   gpuExpertsRelease(experts) -> unpins the weights and drops the GPU state of this experts handle
//   expertsSplitPlan(cost, rows, expertBytes, placement, resident?) -> the cost model's split alone (tests)
//   gpuExpertsPrefetchCounters() -> {queued, used, bankBytes}: the hybrid forward's next-layer prefetch
// One GpuExperts (device 0, its own stream) serves the process; each experts handle gets its
// GpuExpertWeights (pinned weights) on first use.
#include <chrono>
#include <map>
#include <memory>
#include <mutex>

#include "cpu/experts/experts.h"
#include "cuda-loader.h"
#include "gpu/gpu-experts-bridge.h"
#include "gpu/gpu-experts-split.h"
#include "napi-registry.h"
#include "napi-util.h"

namespace mixtile {
namespace {

struct State {
  const CudaApi* api = nullptr;
  std::unique_ptr<GpuExperts> gpu;
  std::unique_ptr<ExpertsSplitRunner> split;
  // Keyed by the experts object; the weak_ptr tells a reused address from the original.
  std::map<const ExpertsWeights*, std::pair<std::weak_ptr<ExpertsWeights>, std::shared_ptr<GpuExpertWeights>>> layers;
  void* x_dev = nullptr;
  void* y_dev = nullptr;
  size_t io_bytes = 0;
};

std::mutex g_mu;

// The process's state, created on first use; never destroyed (CUDA may be torn down before static
// destructors run). Throws with the loader's or the device's reason when there is no usable GPU.
State& state() {
  static State* s = nullptr;
  if (s) return *s;
  std::string why;
  const CudaApi* api = cuda_api(&why);
  if (!api) throw std::runtime_error("no CUDA: " + why);
  int n = 0;
  if (api->mxc_device_count(&n) != MXC_OK || n == 0) throw std::runtime_error(std::string("no CUDA device: ") + api->mxc_last_error());
  auto* st = new State();
  st->api = api;
  st->gpu = std::make_unique<GpuExperts>(*api, 0);
  st->split = std::make_unique<ExpertsSplitRunner>(*st->gpu);
  s = st;
  return *s;
}

GpuExpertWeights& layer_of(State& st, const std::shared_ptr<ExpertsWeights>& ew) {
  auto it = st.layers.find(ew.get());
  if (it != st.layers.end() && it->second.first.lock() == ew) return *it->second.second;
  auto gw = std::make_shared<GpuExpertWeights>(*st.api, ew->gate, ew->up, ew->down);
  st.layers[ew.get()] = {ew, gw};
  return *gw;
}

void check(const CudaApi& api, mxc_status s, const char* what) {
  if (s != MXC_OK) throw std::runtime_error(std::string(what) + ": " + api.mxc_last_error());
}

template <class F>
Napi::Value guarded(const Napi::CallbackInfo& info, const char* fn, F body) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), std::string(fn) + ": " + e.what());
  }
}

constexpr int64_t MAX_TOKENS = int64_t(1) << 20;

Napi::Value gpu_experts_forward(const Napi::CallbackInfo& info) {
  auto ew = handle_get<ExpertsWeights>(info[0], HandleKind::experts, "gpuExpertsForward");
  const int64_t n = int_arg(info[2], MAX_TOKENS, "gpuExpertsForward: nTokens");
  const float* x = f32_array(info[1], size_t(n * ew->hidden), "gpuExpertsForward: x");
  const int64_t k = int_arg(info[5], ew->n_expert, "gpuExpertsForward: topK");
  if (k < 1) throw Napi::RangeError::New(info.Env(), "gpuExpertsForward: topK must be >= 1");
  const int32_t* ids = i32_array(info[3], size_t(n * k), "gpuExpertsForward: ids");
  const float* w = f32_array(info[4], size_t(n * k), "gpuExpertsForward: weights");
  if (!info[6].IsString()) throw Napi::TypeError::New(info.Env(), "gpuExpertsForward: placement must be a string");
  const std::string placement = info[6].As<Napi::String>().Utf8Value();
  float* out = f32_array(info[7], size_t(n * ew->hidden), "gpuExpertsForward: out");
  const uint8_t* on_gpu = nullptr;
  if (info.Length() > 8 && !info[8].IsUndefined() && !info[8].IsNull()) {
    if (!info[8].IsTypedArray() || info[8].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
        info[8].As<Napi::Uint8Array>().ElementLength() < size_t(ew->n_expert)) {
      throw Napi::TypeError::New(info.Env(), "gpuExpertsForward: onGpu must be a Uint8Array of nExpert flags");
    }
    on_gpu = info[8].As<Napi::Uint8Array>().Data();
  }
  return guarded(info, "gpuExpertsForward", [&]() -> Napi::Value {
    const ExpertsPlacement mode = parse_placement(placement);
    std::lock_guard<std::mutex> lock(g_mu);
    State& st = state();
    const CudaApi& api = *st.api;
    GpuExpertWeights& gw = layer_of(st, ew);
    const size_t bytes = size_t(n * ew->hidden) * 4;
    mxc_stream* s = st.gpu->compute_stream();
    if (st.io_bytes < bytes) {
      check(api, api.mxc_stream_sync(s), "mxc_stream_sync");
      api.mxc_free(st.x_dev);
      api.mxc_free(st.y_dev);
      st.x_dev = st.y_dev = nullptr;
      st.io_bytes = 0;
      check(api, api.mxc_malloc(&st.x_dev, bytes), "mxc_malloc");
      check(api, api.mxc_malloc(&st.y_dev, bytes), "mxc_malloc");
      st.io_bytes = bytes;
    }
    check(api, api.mxc_memcpy_h2d(st.x_dev, x, bytes, s), "mxc_memcpy_h2d");
    check(api, api.mxc_stream_sync(s), "mxc_stream_sync");
    const auto t0 = std::chrono::steady_clock::now();
    ExpertsSplitResult r = st.split->forward(gw, *ew, x, static_cast<float*>(st.x_dev), n, ids, w, int(k), mode,
                                             on_gpu, static_cast<float*>(st.y_dev));
    check(api, api.mxc_stream_sync(s), "mxc_stream_sync");
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    check(api, api.mxc_memcpy_d2h(out, st.y_dev, bytes, s), "mxc_memcpy_d2h");
    check(api, api.mxc_stream_sync(s), "mxc_stream_sync");
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("ms", ms);
    o.Set("cpuMs", r.cpu_ms);
    o.Set("gpuMs", r.plan.gpu_experts > 0 ? st.gpu->last_forward_ms() : 0.0);
    o.Set("gpuExperts", r.plan.gpu_experts);
    o.Set("cpuExperts", r.plan.cpu_experts);
    o.Set("predictedCpuMs", r.plan.cpu_ms);
    o.Set("predictedGpuMs", r.plan.gpu_ms);
    o.Set("gpuBytes", r.gpu.bytes);
    o.Set("pinned", gw.pinned());
    if (!gw.pinned()) o.Set("unpinnedReason", gw.unpinned_reason());
    return o;
  });
}

Napi::Value gpu_experts_cost(const Napi::CallbackInfo& info) {
  auto ew = handle_get<ExpertsWeights>(info[0], HandleKind::experts, "gpuExpertsCost");
  return guarded(info, "gpuExpertsCost", [&]() -> Napi::Value {
    std::lock_guard<std::mutex> lock(g_mu);
    State& st = state();
    GpuExpertWeights& gw = layer_of(st, ew);
    const ExpertCostParams& p = st.split->cost(gw, *ew);
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("pcieGbps", p.pcie_gbps);
    o.Set("gpuBaseUs", p.gpu_base_us);
    o.Set("gpuRowUs", p.gpu_row_us);
    o.Set("gpuCallUs", p.gpu_call_us);
    o.Set("cpuBaseUs", p.cpu_base_us);
    o.Set("cpuRowUs", p.cpu_row_us);
    o.Set("expertBytes", double(gw.expert_bytes()));
    o.Set("source", p.source);
    o.Set("cpuScale", st.split->cpu_scale());
    o.Set("gpuScale", st.split->gpu_scale());
    o.Set("env", p.str());
    return o;
  });
}

Napi::Value gpu_experts_release(const Napi::CallbackInfo& info) {
  auto ew = handle_get<ExpertsWeights>(info[0], HandleKind::experts, "gpuExpertsRelease");
  return guarded(info, "gpuExpertsRelease", [&]() -> Napi::Value {
    std::lock_guard<std::mutex> lock(g_mu);
    State& st = state();
    check(*st.api, st.api->mxc_stream_sync(st.gpu->compute_stream()), "mxc_stream_sync");
    st.layers.erase(ew.get());
    return info.Env().Undefined();
  });
}

// expertsSplitPlan(cost: {pcieGbps, gpuBaseUs, gpuRowUs, gpuCallUs, cpuBaseUs, cpuRowUs, splitCpuX?, splitGpuX?}, rows: number[],
//   expertBytes, placement, resident = 0) -> {onGpu: number[], cpuMs, gpuMs}: the cost model alone (no GPU
//   needed), for tests; experts [0, resident) count as prefetched (no copy).
Napi::Value experts_split_plan(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject() || !info[1].IsArray() || !info[2].IsNumber() || !info[3].IsString()) {
    throw Napi::TypeError::New(env, "expertsSplitPlan(cost, rows, expertBytes, placement)");
  }
  Napi::Object c = info[0].As<Napi::Object>();
  auto num = [&](const char* k) {
    Napi::Value v = c.Get(k);
    if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string("expertsSplitPlan: cost.") + k + " must be a number");
    return v.As<Napi::Number>().DoubleValue();
  };
  ExpertCostParams p;
  p.pcie_gbps = num("pcieGbps");
  p.gpu_base_us = num("gpuBaseUs");
  p.gpu_row_us = num("gpuRowUs");
  p.gpu_call_us = num("gpuCallUs");
  p.cpu_base_us = num("cpuBaseUs");
  p.cpu_row_us = num("cpuRowUs");
  if (c.Has("splitCpuX")) p.split_cpu_x = num("splitCpuX");
  if (c.Has("splitGpuX")) p.split_gpu_x = num("splitGpuX");
  Napi::Array a = info[1].As<Napi::Array>();
  std::vector<int64_t> rows(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) rows[i] = int_arg(a.Get(i), int64_t(1) << 40, "expertsSplitPlan: rows");
  const double bytes = info[2].As<Napi::Number>().DoubleValue();
  const int64_t resident = info.Length() > 4 && !info[4].IsUndefined() ? int_arg(info[4], int64_t(1) << 40, "expertsSplitPlan: resident") : 0;
  return guarded(info, "expertsSplitPlan", [&]() -> Napi::Value {
    const ExpertSplit sp =
        choose_expert_split(p, rows, bytes, parse_placement(info[3].As<Napi::String>().Utf8Value()), resident);
    Napi::Object o = Napi::Object::New(env);
    Napi::Array on = Napi::Array::New(env, sp.on_gpu.size());
    for (uint32_t i = 0; i < sp.on_gpu.size(); ++i) on.Set(i, int(sp.on_gpu[i]));
    o.Set("onGpu", on);
    o.Set("cpuMs", sp.cpu_ms);
    o.Set("gpuMs", sp.gpu_ms);
    return o;
  });
}

Napi::Value gpu_experts_prefetch_counters(const Napi::CallbackInfo& info) {
  const gpu::PrefetchCounters c = gpu::prefetch_counters();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("queued", double(c.queued));
  o.Set("used", double(c.used));
  o.Set("bankBytes", double(c.bank_bytes));
  return o;
}

}  // namespace

MIXTILE_EXPORT("gpuExpertsPrefetchCounters", gpu_experts_prefetch_counters);
MIXTILE_EXPORT("expertsSplitPlan", experts_split_plan);
MIXTILE_EXPORT("gpuExpertsForward", gpu_experts_forward);
MIXTILE_EXPORT("gpuExpertsCost", gpu_experts_cost);
MIXTILE_EXPORT("gpuExpertsRelease", gpu_experts_release);

}  // namespace mixtile
