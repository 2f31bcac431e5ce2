// N-API surface of the GPU operators (src/native/gpu.ts): attention, MoE / dense FFN, embedding and
// output head. Each create takes the context handle and native weight handles; forward calls queue work
// for the ubatch begun with gpuBatchBegin.
#include "gpu/attention.h"
#include "gpu/ffn.h"
#include "gpu/handles.h"
#include "gpu/head.h"
#include "napi-registry.h"

namespace mixtile::gpu {
namespace {

std::shared_ptr<GpuContext> ctx_of(const Napi::Object& o) {
  return gpu_handle_get<GpuContext>(o.Get("ctx"), GpuHandle::context, "ctx");
}

std::shared_ptr<Weight> optional_weight(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  return weight_arg(v, key);
}

// gpuAttentionCreate({ctx, layer, eps, ropeTheta, norm, qNorm?, kNorm?, wq, wk, wv, wo}) -> handle
Napi::Value attention_create(const Napi::CallbackInfo& info) {
  return gpu_guard(info, "gpuAttentionCreate", [&]() -> Napi::Value {
    auto o = options_arg(info, "gpuAttentionCreate");
    auto num = [&](const char* k) { return num_opt(o, k, "gpuAttentionCreate"); };
    auto w = [&](const char* k) { return weight_arg(o.Get(k), k); };
    auto qn = optional_weight(o, "qNorm"), kn = optional_weight(o, "kNorm");
    auto a = gpu_attention_create(ctx_of(o), int(num("layer")), float(num("eps")), num("ropeTheta"), *w("norm"), qn.get(),
                                  kn.get(), *w("wq"), *w("wk"), *w("wv"), *w("wo"));
    return make_gpu_handle(info.Env(), GpuHandle::attention, a);
  });
}

Napi::Value attention_forward(const Napi::CallbackInfo& info) {
  return gpu_guard(info, "gpuAttentionForward", [&]() -> Napi::Value {
    gpu_attention_forward(*gpu_handle_get<GpuAttention>(info[0], GpuHandle::attention, "gpu attention"));
    return info.Env().Undefined();
  });
}

Napi::Value attention_dispose(const Napi::CallbackInfo& info) {
  gpu_handle_arg<GpuAttention>(info[0], GpuHandle::attention, "gpu attention")->ptr.reset();
  return info.Env().Undefined();
}

// gpuMoeCreate({ctx, layer, eps, norm, router, gateExps, upExps, downExps, topK, normTopKProb, backend?,
//               expertsPrefillOnGpu?, deferExperts?, deferJoin? ('moe' | 'attention')}) -> handle
Napi::Value moe_create(const Napi::CallbackInfo& info) {
  return gpu_guard(info, "gpuMoeCreate", [&]() -> Napi::Value {
    auto o = options_arg(info, "gpuMoeCreate");
    auto num = [&](const char* k) { return num_opt(o, k, "gpuMoeCreate"); };
    auto w = [&](const char* k) { return weight_arg(o.Get(k), k); };
    std::string backend = o.Get("backend").IsString() ? o.Get("backend").As<Napi::String>().Utf8Value() : "auto";
    const int defer = o.Get("deferExperts").IsNumber() ? int(num("deferExperts")) : 0;
    const std::string join = o.Get("deferJoin").IsString() ? o.Get("deferJoin").As<Napi::String>().Utf8Value() : "moe";
    if (join != "moe" && join != "attention") {
      throw Napi::TypeError::New(info.Env(), "gpuMoeCreate: deferJoin must be 'moe' or 'attention', got '" + join + "'");
    }
    auto f = gpu_moe_create(ctx_of(o), int(num("layer")), float(num("eps")), *w("norm"), *w("router"), *w("gateExps"),
                            *w("upExps"), *w("downExps"), int(num("topK")), o.Get("normTopKProb").ToBoolean().Value(),
                            backend, o.Get("expertsPrefillOnGpu").ToBoolean().Value(), defer,
                            join == "attention" ? DeferJoin::attention : DeferJoin::moe);
    return make_gpu_handle(info.Env(), GpuHandle::ffn, f);
  });
}

// gpuMlpCreate({ctx, layer, eps, norm, gate, up, down}) -> handle
Napi::Value mlp_create(const Napi::CallbackInfo& info) {
  return gpu_guard(info, "gpuMlpCreate", [&]() -> Napi::Value {
    auto o = options_arg(info, "gpuMlpCreate");
    auto num = [&](const char* k) { return num_opt(o, k, "gpuMlpCreate"); };
    auto w = [&](const char* k) { return weight_arg(o.Get(k), k); };
    auto f = gpu_mlp_create(ctx_of(o), int(num("layer")), float(num("eps")), *w("norm"), *w("gate"), *w("up"), *w("down"));
    return make_gpu_handle(info.Env(), GpuHandle::ffn, f);
  });
}

Napi::Value ffn_forward(const Napi::CallbackInfo& info) {
  return gpu_guard(info, "gpuFfnForward", [&]() -> Napi::Value {
    gpu_ffn_forward(*gpu_handle_get<GpuFfn>(info[0], GpuHandle::ffn, "gpu ffn"));
    return info.Env().Undefined();
  });
}

Napi::Value ffn_dispose(const Napi::CallbackInfo& info) {
  gpu_handle_arg<GpuFfn>(info[0], GpuHandle::ffn, "gpu ffn")->ptr.reset();
  return info.Env().Undefined();
}

// gpuEmbeddingCreate({ctx, table}) -> handle
Napi::Value embedding_create(const Napi::CallbackInfo& info) {
  return gpu_guard(info, "gpuEmbeddingCreate", [&]() -> Napi::Value {
    auto o = options_arg(info, "gpuEmbeddingCreate");
    auto e = gpu_embedding_create(ctx_of(o), *weight_arg(o.Get("table"), "table"));
    return make_gpu_handle(info.Env(), GpuHandle::embedding, e);
  });
}

// gpuEmbeddingForward(emb, tokens Int32Array, n): x on the device = the tokens' rows.
Napi::Value embedding_forward(const Napi::CallbackInfo& info) {
  return gpu_guard(info, "gpuEmbeddingForward", [&]() -> Napi::Value {
    auto e = gpu_handle_get<GpuEmbedding>(info[0], GpuHandle::embedding, "gpu embedding");
    int64_t n = int_arg(info[2], e->ctx->dims.ubatch, "n");
    const int32_t* t = i32_array(info[1], size_t(n), "tokens");
    for (int64_t i = 0; i < n; ++i) {
      if (t[i] < 0 || t[i] >= e->vocab) {
        throw Napi::RangeError::New(info.Env(), "token id " + std::to_string(t[i]) + " outside the vocabulary [0, " +
                                                    std::to_string(e->vocab) + ")");
      }
    }
    gpu_embedding_forward(*e, t, n);
    return info.Env().Undefined();
  });
}

Napi::Value embedding_dispose(const Napi::CallbackInfo& info) {
  gpu_handle_arg<GpuEmbedding>(info[0], GpuHandle::embedding, "gpu embedding")->ptr.reset();
  return info.Env().Undefined();
}

// gpuLmHeadCreate({ctx, eps, norm, out}) -> handle
Napi::Value lm_head_create(const Napi::CallbackInfo& info) {
  return gpu_guard(info, "gpuLmHeadCreate", [&]() -> Napi::Value {
    auto o = options_arg(info, "gpuLmHeadCreate");
    auto h = gpu_lm_head_create(ctx_of(o), float(num_opt(o, "eps", "gpuLmHeadCreate")), *weight_arg(o.Get("norm"), "norm"),
                                *weight_arg(o.Get("out"), "out"));
    return make_gpu_handle(info.Env(), GpuHandle::lm_head, h);
  });
}

// gpuLmHeadForward(head, rows Int32Array, logits Float32Array [rows.length * vocab])
Napi::Value lm_head_forward(const Napi::CallbackInfo& info) {
  return gpu_guard(info, "gpuLmHeadForward", [&]() -> Napi::Value {
    auto h = gpu_handle_get<GpuLmHead>(info[0], GpuHandle::lm_head, "gpu lm head");
    const int32_t* rows = i32_array(info[1], 0, "rows");
    const int64_t k = int64_t(info[1].As<Napi::Int32Array>().ElementLength());
    const int64_t n = h->ctx->plan.n;
    for (int64_t r = 0; r < k; ++r) {
      if (rows[r] < 0 || rows[r] >= n) {
        throw Napi::RangeError::New(info.Env(), "logits row " + std::to_string(rows[r]) + " outside the batch of " +
                                                    std::to_string(n));
      }
    }
    gpu_lm_head_forward(*h, rows, k, f32_array(info[2], size_t(k * h->ctx->dims.vocab), "logits"));
    return info.Env().Undefined();
  });
}

Napi::Value lm_head_dispose(const Napi::CallbackInfo& info) {
  gpu_handle_arg<GpuLmHead>(info[0], GpuHandle::lm_head, "gpu lm head")->ptr.reset();
  return info.Env().Undefined();
}

}  // namespace

MIXTILE_EXPORT("gpuAttentionCreate", attention_create);
MIXTILE_EXPORT("gpuAttentionForward", attention_forward);
MIXTILE_EXPORT("gpuAttentionDispose", attention_dispose);
MIXTILE_EXPORT("gpuMoeCreate", moe_create);
MIXTILE_EXPORT("gpuMlpCreate", mlp_create);
MIXTILE_EXPORT("gpuFfnForward", ffn_forward);
MIXTILE_EXPORT("gpuFfnDispose", ffn_dispose);
MIXTILE_EXPORT("gpuEmbeddingCreate", embedding_create);
MIXTILE_EXPORT("gpuEmbeddingForward", embedding_forward);
MIXTILE_EXPORT("gpuEmbeddingDispose", embedding_dispose);
MIXTILE_EXPORT("gpuLmHeadCreate", lm_head_create);
MIXTILE_EXPORT("gpuLmHeadForward", lm_head_forward);
MIXTILE_EXPORT("gpuLmHeadDispose", lm_head_dispose);

}  // namespace mixtile::gpu
