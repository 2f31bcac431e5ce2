// N-API surface of the GPU context (src/native/gpu.ts): create/dispose, the ubatch's positions, the
// hidden state between host and device, KV slot copies, finishing the load, and the counters.
#include <cstring>

#include "gpu/context.h"
#include "gpu/gpu-experts-bridge.h"
#include "gpu/handles.h"
#include "gpu/weights-upload.h"
#include "napi-registry.h"

namespace mixtile::gpu {
namespace {

constexpr int64_t MAX = int64_t(1) << 31;

// gpuContextCreate({device, hidden, nHeads, nKvHeads, headDim, nExperts, topK, ffn, vocab, ubatch,
//                   kvType: 1 (f16) | 2 (bf16), nSeq, ctx, kvLayers: boolean[]}) -> handle
Napi::Value context_create(const Napi::CallbackInfo& info) {
  return gpu_guard(info, "gpuContextCreate", [&]() -> Napi::Value {
    auto o = options_arg(info, "gpuContextCreate");
    auto num = [&](const char* k) { return num_opt(o, k, "gpuContextCreate"); };
    GpuContextOptions c;
    c.device = int(num("device"));
    c.dims.hidden = int64_t(num("hidden"));
    c.dims.n_heads = int(num("nHeads"));
    c.dims.n_kv_heads = int(num("nKvHeads"));
    c.dims.head_dim = int(num("headDim"));
    c.dims.n_experts = int(num("nExperts"));
    c.dims.top_k = int(num("topK"));
    c.dims.ffn = int64_t(num("ffn"));
    c.dims.vocab = int64_t(num("vocab"));
    c.dims.ubatch = int64_t(num("ubatch"));
    const int kv_type = int(num("kvType"));
    c.kv_type = kv_type == 2 ? MXC_BF16 : MXC_F16;
    c.n_seq = int(num("nSeq"));
    c.ctx = int64_t(num("ctx"));
    if (!o.Get("kvLayers").IsArray()) throw Napi::TypeError::New(info.Env(), "gpuContextCreate: kvLayers must be an array");
    auto layers = o.Get("kvLayers").As<Napi::Array>();
    for (uint32_t i = 0; i < layers.Length(); ++i) c.kv_layers.push_back(layers.Get(i).ToBoolean().Value());
    return make_gpu_handle(info.Env(), GpuHandle::context, gpu_context_create(c));
  });
}

Napi::Value context_dispose(const Napi::CallbackInfo& info) {
  gpu_handle_arg<GpuContext>(info[0], GpuHandle::context, "gpu context")->ptr.reset();
  return info.Env().Undefined();
}

// gpuLoadDone(ctx): frees the upload staging and waits for the uploads.
Napi::Value load_done(const Napi::CallbackInfo& info) {
  return gpu_guard(info, "gpuLoadDone", [&]() -> Napi::Value {
    upload_release(*gpu_handle_get<GpuContext>(info[0], GpuHandle::context, "gpu context"));
    return info.Env().Undefined();
  });
}

// gpuBatchBegin(ctx, positions Int32Array, seqIds Int32Array, n)
Napi::Value batch_begin(const Napi::CallbackInfo& info) {
  return gpu_guard(info, "gpuBatchBegin", [&]() -> Napi::Value {
    auto g = gpu_handle_get<GpuContext>(info[0], GpuHandle::context, "gpu context");
    int64_t n = int_arg(info[3], MAX, "n");
    const int32_t* pos = i32_array(info[1], size_t(n), "positions");
    const int32_t* seq = i32_array(info[2], size_t(n), "seqIds");
    for (int64_t i = 0; i < n; ++i) {
      if (seq[i] < 0 || seq[i] >= g->kv.n_seq || pos[i] < 0 || pos[i] >= g->kv.capacity) {
        throw Napi::RangeError::New(info.Env(), "gpuBatchBegin: token " + std::to_string(i) + " has slot " +
                                                    std::to_string(seq[i]) + " / position " + std::to_string(pos[i]) +
                                                    " outside the GPU KV cache");
      }
    }
    gpu_batch_begin(*g, pos, seq, n);
    return info.Env().Undefined();
  });
}

// gpuHiddenToDevice(ctx, x Float32Array [n * hidden], n) / gpuHiddenToHost(ctx, x, n)
Napi::Value hidden_to_device(const Napi::CallbackInfo& info) {
  return gpu_guard(info, "gpuHiddenToDevice", [&]() -> Napi::Value {
    auto g = gpu_handle_get<GpuContext>(info[0], GpuHandle::context, "gpu context");
    int64_t n = int_arg(info[2], g->dims.ubatch, "n");
    gpu_hidden_to_device(*g, f32_array(info[1], size_t(n * g->dims.hidden), "x"), n);
    return info.Env().Undefined();
  });
}
Napi::Value hidden_to_host(const Napi::CallbackInfo& info) {
  return gpu_guard(info, "gpuHiddenToHost", [&]() -> Napi::Value {
    auto g = gpu_handle_get<GpuContext>(info[0], GpuHandle::context, "gpu context");
    int64_t n = int_arg(info[2], g->dims.ubatch, "n");
    gpu_hidden_to_host(*g, f32_array(info[1], size_t(n * g->dims.hidden), "x"), n);
    return info.Env().Undefined();
  });
}

// gpuKvCopy(ctx, src, dst, nTokens)
Napi::Value kv_copy(const Napi::CallbackInfo& info) {
  return gpu_guard(info, "gpuKvCopy", [&]() -> Napi::Value {
    auto g = gpu_handle_get<GpuContext>(info[0], GpuHandle::context, "gpu context");
    gpu_kv_copy(*g, int(int_arg(info[1], MAX, "src")), int(int_arg(info[2], MAX, "dst")), int_arg(info[3], MAX, "nTokens"));
    return info.Env().Undefined();
  });
}

// gpuStats(ctx) -> { forwards, attention, moe, mlp, lmHeadRows, embedTokens, expertsCpuTokens,
//   expertsGpuTokens, h2dBytes, d2hBytes, kvBytes, attentionIssueMs, expertsWaitMs, expertsCpuMs, lmHeadMs,
//   expertsDeferred, expertsDeferredMs, profileLayers, profile{Attention,Route,D2h,H2dAdd,IssueGap}Ms,
//   graphsCaptured, graphLaunches, graphCaptureFailures, vramUsedBytes, vramAllocatedBytes, vramPeakBytes,
//   expertsSplit { calls, cpuExperts, gpuExperts, cpuMs, gpuMs, predictedCpuMs, predictedGpuMs, cost, cpuScale,
//   gpuScale } (once prefill experts used the GPU), device, library }
Napi::Value stats(const Napi::CallbackInfo& info) {
  auto g = gpu_handle_get<GpuContext>(info[0], GpuHandle::context, "gpu context");
  const GpuCounters& c = g->counters;
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("forwards", double(c.forwards));
  o.Set("attention", double(c.attention));
  o.Set("moe", double(c.moe));
  o.Set("mlp", double(c.mlp));
  o.Set("lmHeadRows", double(c.lm_head_rows));
  o.Set("embedTokens", double(c.embed_tokens));
  o.Set("expertsCpuTokens", double(c.experts_cpu_tokens));
  o.Set("expertsGpuTokens", double(c.experts_gpu_tokens));
  o.Set("h2dBytes", double(c.h2d_bytes));
  o.Set("d2hBytes", double(c.d2h_bytes));
  o.Set("kvBytes", double(g->kv.bytes));
  o.Set("attentionIssueMs", double(c.attention_issue_ns) * 1e-6);
  o.Set("expertsWaitMs", double(c.experts_wait_ns) * 1e-6);
  o.Set("expertsCpuMs", double(c.experts_cpu_ns) * 1e-6);
  o.Set("lmHeadMs", double(c.lm_head_ns) * 1e-6);
  o.Set("expertsDeferred", double(c.experts_deferred));
  o.Set("expertsDeferredMs", double(c.experts_deferred_ns) * 1e-6);
  o.Set("profileLayers", double(c.profile_layers));
  o.Set("profileAttentionMs", c.profile_attention_us * 1e-3);
  o.Set("profileRouteMs", c.profile_route_us * 1e-3);
  o.Set("profileD2hMs", c.profile_d2h_us * 1e-3);
  o.Set("profileH2dAddMs", c.profile_h2d_add_us * 1e-3);
  o.Set("profileIssueGapMs", c.profile_issue_gap_us * 1e-3);
  o.Set("graphsCaptured", double(c.graphs_captured));
  o.Set("graphLaunches", double(c.graph_launches));
  o.Set("graphCaptureFailures", double(c.graph_capture_failures));
  // Device-wide memory in use (this process's context, buffers, weights and KV, plus anything else on the GPU).
  uint64_t free_b = 0, total_b = 0;
  g->bind();
  if (g->api->mxc_mem_info(&free_b, &total_b) == MXC_OK) o.Set("vramUsedBytes", double(total_b - free_b));
  // This process's own device allocations (all its GPU contexts), now and at their highest: the VRAM it asked for.
  uint64_t live_b = 0, peak_b = 0;
  if (g->api->mxc_mem_usage(&live_b, &peak_b) == MXC_OK) {
    o.Set("vramAllocatedBytes", double(live_b));
    o.Set("vramPeakBytes", double(peak_b));
  }
  const ExpertsSplitStats sp = experts_split_stats(*g);
  if (sp.used) {
    Napi::Object e = Napi::Object::New(info.Env());
    e.Set("calls", double(sp.totals.calls));
    e.Set("cpuExperts", double(sp.totals.cpu_experts));
    e.Set("gpuExperts", double(sp.totals.gpu_experts));
    e.Set("cpuMs", sp.totals.cpu_ms);
    e.Set("gpuMs", sp.totals.gpu_ms);
    e.Set("predictedCpuMs", sp.totals.predicted_cpu_ms);
    e.Set("predictedGpuMs", sp.totals.predicted_gpu_ms);
    e.Set("cost", sp.cost.source.empty() ? std::string() : sp.cost.str());
    e.Set("cpuScale", sp.cost.split_cpu_x);
    e.Set("gpuScale", sp.cost.split_gpu_x);
    o.Set("expertsSplit", e);
  }
  o.Set("device", g->device);
  o.Set("library", g->api->path);
  return o;
}

}  // namespace

MIXTILE_EXPORT("gpuContextCreate", context_create);
MIXTILE_EXPORT("gpuContextDispose", context_dispose);
MIXTILE_EXPORT("gpuLoadDone", load_done);
MIXTILE_EXPORT("gpuBatchBegin", batch_begin);
MIXTILE_EXPORT("gpuHiddenToDevice", hidden_to_device);
MIXTILE_EXPORT("gpuHiddenToHost", hidden_to_host);
MIXTILE_EXPORT("gpuKvCopy", kv_copy);
MIXTILE_EXPORT("gpuStats", stats);

}  // namespace mixtile::gpu
